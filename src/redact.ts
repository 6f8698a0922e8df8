/**
 * Secrets never reach logs, reports or errors. Nodemailer's own errors may
 * quote server responses or commands; everything mailedge prints passes
 * through this first, with the secret and its usual SMTP encodings removed.
 */
const SECRET_KEYS = ['pass', 'accessToken', 'refreshToken', 'clientSecret', 'privateKey'] as const;

export function secretRedactor(auth: unknown): (text: string) => string {
  const secrets = new Set<string>();
  if (typeof auth === 'object' && auth !== null) {
    const record = auth as Record<string, unknown>;
    const user = typeof record.user === 'string' ? record.user : '';
    for (const key of SECRET_KEYS) {
      const value = record[key];
      if (typeof value !== 'string' || value.length === 0) continue;
      secrets.add(value);
      // AUTH LOGIN sends the password alone in base64; AUTH PLAIN sends \0user\0pass.
      secrets.add(Buffer.from(value).toString('base64'));
      secrets.add(Buffer.from(`\u0000${user}\u0000${value}`).toString('base64'));
      secrets.add(encodeURIComponent(value));
    }
  }
  const ordered = [...secrets].filter((s) => s.length >= 3).sort((a, b) => b.length - a.length);
  if (ordered.length === 0) return (text) => text;
  return (text) => ordered.reduce((out, secret) => out.split(secret).join('[redacted]'), text);
}
