/**
 * A stub resolver speaking the wire format itself, so mailedge sees TTLs of
 * every record (Node's resolvePtr drops them), tells NXDOMAIN from SERVFAIL
 * from silence, and owns its deadline: c-ares backs off between tries well
 * past its per-try timeout, and a check in front of every message cannot wait
 * for that.
 */
import { createSocket } from 'node:dgram';
import { randomInt } from 'node:crypto';
import { connect } from 'node:net';
import { buildQuery, decodeMessage, nameKey, Rcode, rcodeName, type DnsMessage } from './wire.js';
import { formatServer, type DnsServerAddress } from './servers.js';

export type TempReason = 'timeout' | 'servfail' | 'refused' | 'unreachable' | 'malformed';

export type QueryOutcome =
  | { kind: 'message'; message: DnsMessage; server: string; transport: 'udp' | 'tcp' }
  | { kind: 'tempfail'; reason: TempReason; detail: string };

type Attempt =
  | { kind: 'message'; message: DnsMessage }
  | { kind: 'failed'; reason: TempReason; detail: string };

export interface DnsClientOptions {
  servers: readonly DnsServerAddress[];
  /** How long one server gets before the next one is asked. */
  attemptTimeout: number;
  /** Whole passes over the server list before giving up. */
  passes?: number;
}

/** Worse reasons first: a SERVFAIL says more than silence does. */
const REASON_RANK: TempReason[] = ['servfail', 'refused', 'malformed', 'unreachable', 'timeout'];

export class DnsClient {
  private readonly passes: number;
  /** Queries put on the wire, by transport: the benchmark and tests read these. */
  readonly sent = { udp: 0, tcp: 0 };

  constructor(private readonly options: DnsClientOptions) {
    this.passes = options.passes ?? 2;
  }

  async query(name: string, type: number, signal: AbortSignal): Promise<QueryOutcome> {
    const failures: Array<{ reason: TempReason; detail: string }> = [];
    for (let pass = 0; pass < this.passes; pass++) {
      for (const server of this.options.servers) {
        if (signal.aborted) {
          failures.push({ reason: 'timeout', detail: 'deadline reached' });
          return this.giveUp(failures);
        }
        const label = formatServer(server);
        let attempt = await this.udp(server, name, type, signal);
        let transport: 'udp' | 'tcp' = 'udp';
        if (attempt.kind === 'message' && attempt.message.truncated) {
          transport = 'tcp';
          attempt = await this.tcp(server, name, type, signal);
        }
        if (attempt.kind === 'failed') {
          failures.push({ reason: attempt.reason, detail: `${label}: ${attempt.detail}` });
          continue;
        }
        const rcode = attempt.message.rcode;
        if (rcode === Rcode.NOERROR || rcode === Rcode.NXDOMAIN) {
          return { kind: 'message', message: attempt.message, server: label, transport };
        }
        const reason: TempReason = rcode === Rcode.REFUSED ? 'refused' : rcode === Rcode.SERVFAIL ? 'servfail' : 'malformed';
        failures.push({ reason, detail: `${label}: answered ${rcodeName(rcode)}` });
      }
    }
    return this.giveUp(failures);
  }

  private giveUp(failures: Array<{ reason: TempReason; detail: string }>): QueryOutcome {
    const worst = REASON_RANK.find((r) => failures.some((f) => f.reason === r)) ?? 'timeout';
    const details = [...new Set(failures.map((f) => f.detail))];
    return { kind: 'tempfail', reason: worst, detail: details.join('; ') || 'no server answered' };
  }

  private udp(server: DnsServerAddress, name: string, type: number, signal: AbortSignal): Promise<Attempt> {
    return new Promise((resolve) => {
      const id = randomInt(0, 0x10000);
      const query = buildQuery(id, name, type);
      const socket = createSocket(server.family === 6 ? 'udp6' : 'udp4');
      let done = false;
      const finish = (attempt: Attempt): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        socket.close();
        resolve(attempt);
      };
      const onAbort = (): void => finish({ kind: 'failed', reason: 'timeout', detail: 'deadline reached' });
      const timer = setTimeout(
        () => finish({ kind: 'failed', reason: 'timeout', detail: `no answer within ${this.options.attemptTimeout} ms` }),
        this.options.attemptTimeout,
      );
      signal.addEventListener('abort', onAbort, { once: true });
      socket.on('error', (err: NodeJS.ErrnoException) =>
        finish({
          kind: 'failed',
          reason: err.code === 'ECONNREFUSED' ? 'unreachable' : 'timeout',
          detail: err.code === 'ECONNREFUSED' ? 'port unreachable' : err.message,
        }),
      );
      // A connected socket only accepts datagrams from the server, and turns
      // ICMP port-unreachable into ECONNREFUSED instead of a silent timeout.
      socket.on('message', (buf) => {
        // Anything that is not the answer to this exact question is ignored, not trusted.
        const parsed = parseResponse(buf, id, name, type);
        if (parsed.kind === 'ok') finish({ kind: 'message', message: parsed.message });
        else if (parsed.kind === 'malformed') finish({ kind: 'failed', reason: 'malformed', detail: parsed.detail });
      });
      socket.connect(server.port, server.address, () => {
        if (done) return;
        this.sent.udp++;
        socket.send(query, (err) => {
          if (err) finish({ kind: 'failed', reason: 'unreachable', detail: err.message });
        });
      });
    });
  }

  private tcp(server: DnsServerAddress, name: string, type: number, signal: AbortSignal): Promise<Attempt> {
    return new Promise((resolve) => {
      const id = randomInt(0, 0x10000);
      const query = buildQuery(id, name, type);
      const socket = connect({ host: server.address, port: server.port });
      let buffered = Buffer.alloc(0);
      let done = false;
      const finish = (attempt: Attempt): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        socket.destroy();
        resolve(attempt);
      };
      const onAbort = (): void => finish({ kind: 'failed', reason: 'timeout', detail: 'deadline reached (tcp)' });
      const timer = setTimeout(
        () => finish({ kind: 'failed', reason: 'timeout', detail: `no TCP answer within ${this.options.attemptTimeout} ms` }),
        this.options.attemptTimeout,
      );
      signal.addEventListener('abort', onAbort, { once: true });
      socket.on('error', (err: NodeJS.ErrnoException) =>
        finish({
          kind: 'failed',
          reason: err.code === 'ECONNREFUSED' ? 'unreachable' : 'timeout',
          detail: `tcp: ${err.code ?? err.message}`,
        }),
      );
      socket.on('connect', () => {
        this.sent.tcp++;
        const length = Buffer.alloc(2);
        length.writeUInt16BE(query.length);
        socket.write(Buffer.concat([length, query]));
      });
      socket.on('data', (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk]);
        while (buffered.length >= 2) {
          const size = buffered.readUInt16BE(0);
          if (buffered.length < 2 + size) return;
          const parsed = parseResponse(buffered.subarray(2, 2 + size), id, name, type);
          buffered = buffered.subarray(2 + size);
          // A truncated answer over TCP has nowhere further to go: its records are incomplete.
          if (parsed.kind === 'ok' && parsed.message.truncated) return finish({ kind: 'failed', reason: 'malformed', detail: 'tcp: answer still truncated' });
          if (parsed.kind === 'ok') return finish({ kind: 'message', message: parsed.message });
          if (parsed.kind === 'malformed') return finish({ kind: 'failed', reason: 'malformed', detail: `tcp: ${parsed.detail}` });
        }
      });
      socket.on('end', () => finish({ kind: 'failed', reason: 'malformed', detail: 'tcp: connection closed before an answer' }));
    });
  }
}

const ERROR_RCODES = new Set<number>([Rcode.FORMERR, Rcode.SERVFAIL, Rcode.NOTIMP, Rcode.REFUSED]);

type Parsed = { kind: 'ok'; message: DnsMessage } | { kind: 'ignore' } | { kind: 'malformed'; detail: string };

/**
 * The decoded answer if it answers exactly our question. A packet that is not
 * ours is ignored; one that carries our id but cannot be decoded is reported
 * as malformed, so a broken server gives a verdict instead of a timeout.
 */
function parseResponse(buf: Buffer, id: number, name: string, type: number): Parsed {
  if (buf.length < 2 || buf.readUInt16BE(0) !== id) return { kind: 'ignore' };
  let message: DnsMessage;
  try {
    message = decodeMessage(buf);
  } catch (err) {
    return { kind: 'malformed', detail: `malformed answer (${(err as Error).message})` };
  }
  if (!message.response) return { kind: 'ignore' };
  const question = message.questions[0];
  // Without a question only an error is believable (servers omit it from FORMERR and the like);
  // a question-less NOERROR or NXDOMAIN could answer anything, so it is not taken as a verdict.
  if (!question) return ERROR_RCODES.has(message.rcode) ? { kind: 'ok', message } : { kind: 'ignore' };
  if (message.questions.length !== 1) return { kind: 'ignore' };
  if (question.type !== type || question.class !== 1 || nameKey(question.name) !== nameKey(name)) return { kind: 'ignore' };
  return { kind: 'ok', message };
}
