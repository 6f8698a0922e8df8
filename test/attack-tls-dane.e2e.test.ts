/**
 * Attacks on DANE-TA(2) (RFC 7672 section 3.1.1 and 3.2.2): the server's
 * chain must lead to the trust anchor the TLSA record names through
 * certificates that may issue certificates. World on 127.0.3.x: its own DNS
 * server with a signed zone, one STARTTLS receiver from the testing kit, and
 * a private CA made here with OpenSSL (test material, in a temporary
 * directory), as a domain that runs DANE-TA with its own CA would have.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startDnsServer, type FixtureDnsServer } from '../src/testing/dns-server.js';
import { startReceiver, type Receiver } from '../src/testing/receiver.js';
import { parseZone } from '../src/testing/zone.js';
import type { ResourceRecord } from '../src/dns/wire.js';
import { createTransport, type MailedgeTransporter } from '../src/create-transport.js';
import type { DirectSentMessageInfo, DomainDelivery } from '../src/routes/direct.js';
import { tlsaRdata } from '../src/tls/dane.js';

const ZONE = `
$TTL 300
2.3.0.127.in-addr.arpa.   PTR mail.out.atk3.test.
mail.out.atk3.test.       A   127.0.3.2
ta.atk3.test.             MX  10 mx-ta.atk3.test.
mx-ta.atk3.test.          A   127.0.3.11
`;

const CHECKS_OFF = { spf: 'off', 'sender-mx': 'off', dmarc: 'off', 'recipient-null-mx': 'off', 'generic-ptr': 'off', authentication: 'off' } as const;

/** The domain's private CA (the DANE-TA anchor), a certificate it issued for its web server, and one made with that certificate's key. */
interface Pki {
  ca: string;
  www: { key: string; cert: string };
  forged: { key: string; cert: string };
  honest: { key: string; cert: string };
}

function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'mailedge-atk3-ta-'));
  const at = (name: string): string => join(dir, name);
  const run = (args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  };
  // A leaf profile without keyUsage, as many private CAs (and `openssl x509 -req` defaults) issue them.
  writeFileSync(
    at('ext.cnf'),
    ['[leaf]', 'basicConstraints=CA:false', 'subjectAltName=DNS:www.atk3.test', '[mx]', 'basicConstraints=CA:false', 'subjectAltName=DNS:mx-ta.atk3.test', ''].join('\n'),
  );
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  run(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '3650', '-subj', '/CN=atk3 private CA (test material)', '-addext', 'basicConstraints=critical,CA:true', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  const issue = (name: string, section: string, caCert: string, caKey: string): void => {
    run(['req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
    run(['x509', '-req', '-in', `${name}.csr`, '-CA', caCert, '-CAkey', caKey, '-set_serial', String(Math.floor(Math.random() * 1e9)), '-days', '3650', '-extfile', 'ext.cnf', '-extensions', section, '-out', `${name}.crt`]);
  };
  issue('www', 'leaf', 'ca.crt', 'ca.key');
  // Whoever holds the web server's key (CA:false) signs a certificate for the MX host with it.
  issue('forged', 'mx', 'www.crt', 'www.key');
  issue('honest', 'mx', 'ca.crt', 'ca.key');
  const read = (name: string): string => readFileSync(at(name), 'utf8');
  return {
    ca: read('ca.crt'),
    www: { key: read('www.key'), cert: read('www.crt') },
    forged: { key: read('forged.key'), cert: read('forged.crt') },
    honest: { key: read('honest.key'), cert: read('honest.crt') },
  };
}

let pki: Pki;
let dns: FixtureDnsServer;
let records: ResourceRecord[];
let forged: Receiver, honest: Receiver, www: Receiver;
const transports: MailedgeTransporter[] = [];

beforeAll(async () => {
  pki = makePki();
  records = [...parseZone(ZONE), { name: '_25._tcp.mx-ta.atk3.test', ttl: 300, class: 1, type: 'OTHER', typeCode: 52, raw: tlsaRdata(2, 0, 1, pki.ca) }];
  dns = await startDnsServer({ host: '127.0.3.54', records, signed: ['ta.atk3.test', 'mx-ta.atk3.test'] });
}, 30_000);
beforeEach(() => dns.setRecords(records));
afterAll(async () => {
  for (const t of transports.splice(0)) t.close();
  await dns.close();
});

async function sendWith(receiverOf: () => Promise<Receiver>): Promise<{ receiver: Receiver; outcome: string; domain: DomainDelivery | undefined }> {
  const receiver = await receiverOf();
  try {
    const t = createTransport({
      direct: true,
      localAddress: '127.0.3.2',
      edge: { mxPort: receiver.port, checks: CHECKS_OFF, dns: { servers: [dns.server], timeout: 1000, dnssec: 'trust-ad' } },
    });
    transports.push(t);
    return await t.sendMail({ from: 'app@out.atk3.test', to: 'a@ta.atk3.test', text: 'secret body' }).then(
      (info) => {
        const domain = (info as DirectSentMessageInfo).domains[0];
        return { receiver, outcome: `delivered: tls ${JSON.stringify(domain?.tls)}`, domain };
      },
      (e: Error & { code?: string; domains?: DomainDelivery[] }) => ({ receiver, outcome: `refused: ${e.code} ${e.message}`, domain: e.domains?.[0] }),
    );
  } finally {
    await receiver.close();
  }
}

describe('DANE-TA: the path to the anchor', () => {
  // FOUND, FIXED (high). daneMatch()/chainsTo() (src/tls/dane.ts) accept any presented chain in which
  // each certificate is issued (X509Certificate.checkIssued: names, key identifiers, keyUsage
  // only when present) and signed by the next, up to the one the DANE-TA record matches. They
  // never ask whether an issuer may issue: basicConstraints CA:true (nor pathLen, nor the
  // intermediates' dates). So anybody holding ANY certificate the domain's CA issued (its web
  // server's, a former employee's, a device's) signs a certificate for the MX host name with
  // that certificate's key, presents [forged, www, CA], and is "authorized" by DANE: the mail
  // goes to the interceptor. OpenSSL's own verification refuses the same chain ("invalid CA
  // certificate"); Postfix validates DANE-TA chains with it.
  // Fix: src/tls/dane.ts chainsTo(): for every issuer below the anchor (chain[i + 1], i + 1 <
  // anchorIndex) and for the anchor itself when it is not the leaf, require X509Certificate.ca
  // (basicConstraints CA:true), keyUsage keyCertSign when keyUsage is present, and the dates
  // of every certificate on the path; or build the path with node:tls (a secure context whose
  // only CA is the matched anchor) and take socket.authorized from a second verification.
  // Fixed there (pathProblem): every issuer must be a CA (X509Certificate.ca), its keyUsage (read
  // from the DER: X509Certificate.keyUsage is the extended key usage) must allow keyCertSign, its
  // pathLenConstraint must hold, and every certificate on the path must be within its dates.
  it('a certificate for the MX name signed by a CA:false certificate of the anchor is refused: DANE_NO_MATCH, nothing delivered', async () => {
    const { receiver, outcome } = await sendWith(() => startReceiver({ host: '127.0.3.11', tls: { key: pki.forged.key, cert: pki.forged.cert + pki.www.cert + pki.ca } }));
    forged = receiver;
    expect(forged.messages, outcome).toBe(0);
    expect(outcome).toMatch(/^refused: DANE_NO_MATCH/);
    expect(outcome).toMatch(/is not a CA/);
  });

  it('the anchor-issued certificate of another host, presented as is, is refused for its name (held)', async () => {
    const { receiver, outcome } = await sendWith(() => startReceiver({ host: '127.0.3.11', tls: { key: pki.www.key, cert: pki.www.cert + pki.ca } }));
    www = receiver;
    expect(www.messages, outcome).toBe(0);
    expect(outcome).toMatch(/^refused: DANE_NO_MATCH/);
  });

  it('an honest certificate for the MX name issued by the anchor is delivered to, authorized (held: baseline)', async () => {
    const { receiver, outcome, domain } = await sendWith(() => startReceiver({ host: '127.0.3.11', tls: { key: pki.honest.key, cert: pki.honest.cert + pki.ca } }));
    honest = receiver;
    expect(honest.messages, outcome).toBe(1);
    expect(domain?.tls).toMatchObject({ policy: 'dane', authorized: true });
  });
});
