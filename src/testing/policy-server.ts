/**
 * An MTA-STS policy server on loopback (real node:https), for tests: it
 * serves /.well-known/mta-sts.txt for each mta-sts.<domain> host by the Host
 * header, with the certificate the test gives it (from a fixture CA that the
 * test passes to mailedge through edge.tls.ca, never the system store).
 * Per domain a policy text, or a fault: another status (a redirect), another
 * content type, a delay, an over-long body.
 */
import { createServer, type Server } from 'node:https';
import { isIPv4, isIPv6, type AddressInfo, type Socket } from 'node:net';

export type PolicyAnswer =
  | string
  | {
      body?: string;
      /** Default 200. */
      status?: number;
      /** Sent as Location (with a 3xx status, a redirect). */
      location?: string;
      /** Default 'text/plain'. */
      contentType?: string;
      /** Answer after this delay. */
      delayMs?: number;
    };

export interface PolicyServerOptions {
  /** PEM key and certificate (chain) for the policy hosts' names. */
  key: string | Buffer;
  cert: string | Buffer;
  /** Loopback address to bind. Default '127.0.0.1'. */
  host?: string;
  /** Default 0 (ephemeral). */
  port?: number;
  /** By recipient domain (the part after mta-sts.). */
  policies?: Record<string, PolicyAnswer>;
}

export interface PolicyServer {
  readonly host: string;
  readonly port: number;
  /** Every request: the Host header and the path. */
  readonly requests: ReadonlyArray<{ host: string; path: string }>;
  /** Replaces (or with undefined removes: 404) one domain's answer. */
  setPolicy(domain: string, answer: PolicyAnswer | undefined): void;
  close(): Promise<void>;
}

/** A policy's text from its fields, CRLF-terminated as RFC 8461 section 3.2 shows it. */
export function policyText(fields: { mode: 'enforce' | 'testing' | 'none'; mx: string[]; maxAge: number }): string {
  return ['version: STSv1', `mode: ${fields.mode}`, ...fields.mx.map((mx) => `mx: ${mx}`), `max_age: ${fields.maxAge}`, ''].join('\r\n');
}

function isLoopback(host: string): boolean {
  return (isIPv4(host) && host.startsWith('127.')) || (isIPv6(host) && (host === '::1' || host === '0:0:0:0:0:0:0:1'));
}

export async function startPolicyServer(options: PolicyServerOptions): Promise<PolicyServer> {
  const host = options.host ?? '127.0.0.1';
  if (!isLoopback(host)) throw new Error(`startPolicyServer binds loopback only, not ${JSON.stringify(host)}`);
  const policies = new Map<string, PolicyAnswer>(Object.entries(options.policies ?? {}).map(([d, a]) => [d.toLowerCase(), a]));
  const requests: Array<{ host: string; path: string }> = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer({ key: options.key, cert: options.cert }, (req, res) => {
    const hostHeader = String(req.headers.host ?? '').toLowerCase();
    requests.push({ host: hostHeader, path: req.url ?? '' });
    const name = hostHeader.replace(/:\d+$/, '');
    const answer = name.startsWith('mta-sts.') && req.url === '/.well-known/mta-sts.txt' ? policies.get(name.slice('mta-sts.'.length)) : undefined;
    if (answer === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    const spec = typeof answer === 'string' ? { body: answer } : answer;
    const reply = (): void => {
      res.writeHead(spec.status ?? 200, { 'content-type': spec.contentType ?? 'text/plain', ...(spec.location ? { location: spec.location } : {}) });
      res.end(spec.body ?? '');
    };
    if (spec.delayMs) setTimeout(reply, spec.delayMs).unref();
    else reply();
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  // A client that gives up on a bad certificate ends the handshake: expected in tests, not an error.
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  let closing: Promise<void> | undefined;
  return {
    host,
    port: (server.address() as AddressInfo).port,
    get requests() {
      return requests.slice();
    },
    setPolicy(domain, answer) {
      if (answer === undefined) policies.delete(domain.toLowerCase());
      else policies.set(domain.toLowerCase(), answer);
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      });
      return closing;
    },
  };
}
