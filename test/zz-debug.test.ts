import { it } from 'vitest';
import { startWorld } from './support/world.js';
import { createTransport } from '../src/transport.js';
import { startReceiver } from '../src/testing/receiver.js';
it('dbg', async () => {
  const world = await startWorld();
  const r = await startReceiver({ host: '127.0.0.1', faults: { rcptTo: { code: 451, message: '4.7.1 Greylisted' }, times: 1 } });
  const t = createTransport({ ignoreTLS: true, host: '127.0.0.1', port: r.port, localAddress: '127.0.0.2', pool: true, maxConnections: 2, logger: true, debug: true, edge: { dns: { servers: [world.dns.server] } } });
  await t.sendMail({ from: 'a@b.test', to: 'c@d.test', subject: 'first', text: 'x' }).catch((e: unknown) => console.log('ERR', String(e)));
  await t.sendMail({ from: 'a@b.test', to: 'c@d.test', subject: 'second', text: 'x' });
  console.log(JSON.stringify(r.sessions, null, 1), r.connections);
  t.close(); await r.close(); await world.close();
});
