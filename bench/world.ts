/**
 * The benchmark's world, in a child process of its own: the fixture DNS
 * server and a sink receiver. Kept out of the measuring process so that its
 * memory and CPU do not count against (or for) mailedge.
 */
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { startDnsServer, type FixtureDnsServer } from '../src/testing/dns-server.js';
import { parseZone } from '../src/testing/zone.js';

export type WorldRequest =
  | { id: number; op: 'stats'; sessions?: boolean }
  | { id: number; op: 'reset' }
  | { id: number; op: 'zone'; text: string }
  | { id: number; op: 'delay'; ms: number }
  | { id: number; op: 'stopDns' };

export interface SessionRecord {
  ehlo: string;
  client: string;
  openedAt: number;
  /** Epoch ms at which each message of the session was accepted. */
  acceptedAt: number[];
}

export interface WorldStats {
  queries: number;
  queriesByType: Record<string, number>;
  ptrQueryTimes: number[];
  /** Queries by 'TYPE name'. */
  byQuestion: Record<string, number>;
  messages: number;
  duplicates: number;
  subjects: number;
  sessions?: SessionRecord[];
}

async function main(): Promise<void> {
  const zoneText = process.env.BENCH_ZONE ?? '';
  let dns: FixtureDnsServer | undefined = await startDnsServer({ zone: zoneText });
  const subjects = new Set<string>();
  let duplicates = 0;
  let messages = 0;
  let sessions: SessionRecord[] = [];
  const bySession = new Map<string, SessionRecord>();

  const sink = new SMTPServer({
    logger: false,
    authOptional: true,
    disableReverseLookup: true,
    disabledCommands: ['STARTTLS'],
    onMailFrom(_address, session, callback) {
      if (!bySession.has(session.id)) {
        const record: SessionRecord = { ehlo: session.hostNameAppearsAs, client: session.remoteAddress, openedAt: Date.now(), acceptedAt: [] };
        bySession.set(session.id, record);
        sessions.push(record);
      }
      callback();
    },
    onData(stream, session, callback) {
      let head = '';
      stream.on('data', (chunk: Buffer) => {
        if (head.length < 4096) head += chunk.toString('latin1');
      });
      stream.on('end', () => {
        const subject = /^Subject: (.*)$/m.exec(head)?.[1]?.trim() ?? '';
        if (subjects.has(subject)) duplicates++;
        subjects.add(subject);
        messages++;
        bySession.get(session.id)?.acceptedAt.push(Date.now());
        callback();
      });
    },
  });
  sink.on('error', () => undefined);
  await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve));
  const port = (sink.server.address() as AddressInfo).port;
  process.send?.({ ready: true, dnsServer: dns.server, port });

  process.on('message', (request: WorldRequest) => {
    const reply = (body: unknown): void => void process.send?.({ id: request.id, body });
    switch (request.op) {
      case 'stats': {
        const byType: Record<string, number> = {};
        const byQuestion: Record<string, number> = {};
        // One pass: the bulk phase logs tens of thousands of distinct questions.
        const queryLog = dns?.log ?? [];
        for (const q of queryLog) {
          byType[q.type] = (byType[q.type] ?? 0) + 1;
          byQuestion[`${q.type} ${q.name}`] = (byQuestion[`${q.type} ${q.name}`] ?? 0) + 1;
        }
        const stats: WorldStats = {
          queries: dns?.queries ?? 0,
          queriesByType: byType,
          ptrQueryTimes: queryLog.filter((q) => q.type === 'PTR').map((q) => q.at),
          byQuestion,
          messages,
          duplicates,
          subjects: subjects.size,
          ...(request.sessions ? { sessions } : {}),
        };
        return reply(stats);
      }
      case 'reset':
        dns?.resetStats();
        subjects.clear();
        duplicates = 0;
        messages = 0;
        sessions = [];
        bySession.clear();
        return reply(true);
      case 'zone':
        dns?.setRecords(parseZone(request.text));
        return reply(true);
      case 'delay':
        dns?.setDefaultFault(request.ms > 0 ? { delayMs: request.ms } : undefined);
        return reply(true);
      case 'stopDns':
        void dns?.close().then(() => reply(true));
        dns = undefined;
        return;
    }
  });
  process.on('disconnect', () => {
    void dns?.close();
    sink.close();
    process.exit(0);
  });
}

void main();
