import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTransport } from 'mailedge';
import { startDnsServer, startReceiver, type FixtureDnsServer, type Receiver } from 'mailedge/testing';

let dns: FixtureDnsServer;
let receiver: Receiver;

beforeAll(async () => {
  dns = await startDnsServer({
    zone: `
$ORIGIN test.
@        IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60
app      IN A   127.0.0.42
$ORIGIN 127.in-addr.arpa.
42.0.0   IN PTR app.test.
`,
  });
  receiver = await startReceiver({ host: '127.0.0.1', strict: true, dnsServer: dns.server });
});
afterAll(async () => {
  await receiver.close();
  await dns.close();
});

it('sends as app.test', async () => {
  const transport = createTransport({
    host: '127.0.0.1',
    port: receiver.port,
    localAddress: '127.0.0.42',     // any 127.x.y.z on Linux; on macOS alias it to lo0 first
    ignoreTLS: true,
    edge: { dns: { servers: [dns.server] } },
  });
  const info = await transport.sendMail({ from: 'a@app.test', to: 'b@example.test', text: 'hi' });
  expect(info.edge.name).toBe('app.test');
  expect(receiver.sessions.at(-1)?.ehlo).toBe('app.test');
  transport.close();
});
