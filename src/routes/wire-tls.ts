/**
 * Whether the connection that carried a message was TLS, observed without
 * taking STARTTLS away from Nodemailer (a relay keeps Nodemailer's own TLS
 * semantics: its `tls` options, `requireTLS`, `ignoreTLS`, `secure`,
 * `opportunisticTLS`).
 *
 * What is observed, and how:
 * - every socket mailedge hands to Nodemailer (src/routes/relay.ts openSocket)
 *   is watched for the stream Nodemailer pipes into it: Nodemailer writes a
 *   message by piping a data stream into the connection's socket, and Node
 *   announces that on the socket (the public 'pipe' event);
 * - each message handed to Nodemailer is a view whose stream reports what it
 *   is piped into (that data stream). The message therefore went over the
 *   socket that data stream was piped into: a plain socket of mailedge's is
 *   clear text; a TLS socket is TLS (mailedge's own, after its STARTTLS in
 *   direct delivery). A data stream piped into no socket of mailedge's was
 *   piped into the TLS socket Nodemailer made on top of one (its STARTTLS, or
 *   implicit TLS): TLS, with its version and cipher read from that socket;
 * - whether the receiver offered STARTTLS: the replies read on the plain
 *   socket up to the end of the first 250 reply, the EHLO reply (a peek at
 *   the socket's 'data' events, which does not change who reads them or when).
 */
import { TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import type { MailMessage } from 'nodemailer/lib/mailer';
import type MimeNode from 'nodemailer/lib/mime-node';

/** `info.tls`: the session that carried the message; null when it went in clear text. */
export interface WireTls {
  /** 'TLSv1.3', ...; null when the socket no longer tells (closed). */
  version: string | null;
  cipher: string | null;
  /** Whether the receiver's certificate verified (Node's `authorized`; false under rejectUnauthorized: false with an untrusted certificate). */
  authorized: boolean;
}

export interface Carried {
  tls: WireTls | null;
  /** Whether the receiver offered STARTTLS on that connection; null when mailedge did not watch its replies. */
  offered: boolean | null;
}

/** A data stream Nodemailer piped into a socket mailedge handed over → that socket. */
const carriedBy = new WeakMap<object, Socket>();
const offers = new WeakMap<Socket, boolean>();
/** Bytes of replies read for the EHLO reply at most: it comes within the first few hundred. */
const MAX_PEEK = 64 * 1024;

/** Watch a socket handed to Nodemailer; `replies`: also read the server's replies for a STARTTLS offer (a plain socket whose EHLO Nodemailer says). */
export function watchSocket(socket: Socket, replies: boolean): void {
  socket.on('pipe', (source: unknown) => {
    if (typeof source === 'object' && source !== null) carriedBy.set(source, socket);
  });
  if (replies && !(socket instanceof TLSSocket)) peekOffer(socket);
}

function peekOffer(socket: Socket): void {
  offers.set(socket, false);
  let read = 0;
  let pending = '';
  const own = Object.prototype.hasOwnProperty.call(socket, 'emit');
  const emit = socket.emit;
  const stop = (): void => {
    if (own) socket.emit = emit;
    else delete (socket as Partial<Pick<Socket, 'emit'>>).emit;
  };
  socket.emit = function (this: Socket, event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'data') {
      const chunk = args[0];
      const text = Buffer.isBuffer(chunk) ? chunk.toString('latin1') : String(chunk);
      read += text.length;
      const lines = (pending + text).split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        if (/^250[ -]STARTTLS\b/i.test(line)) {
          offers.set(socket, true);
          stop();
          break;
        }
        // The last line of the first 250 reply (the EHLO reply, or HELO's after an EHLO refused) ends the offer:
        // watching every later reply of the connection would cost every message sent on it.
        if (/^250 /.test(line)) {
          stop();
          break;
        }
      }
      if (read > MAX_PEEK) stop();
    } else if (event === 'close') {
      stop();
    }
    return Reflect.apply(emit, this, [event, ...args]) as boolean;
  } as Socket['emit'];
}

const RECORD = Symbol('mailedge.carried');
type Watched = MimeNode & { [RECORD]?: (carried: Carried) => void };

/**
 * What carried the message once Nodemailer has piped its stream into a
 * connection. The message node's own stream is wrapped in place (a view made
 * with Object.create would turn the node into a prototype, which costs V8
 * more per message than everything else here); it still renders as itself.
 */
export function watchMessage(mail: MailMessage): () => Carried | undefined {
  let carried: Carried | undefined;
  const node = mail.message as Watched;
  if (!node[RECORD]) {
    const render = node.createReadStream;
    node.createReadStream = function (this: MimeNode, options) {
      const stream = render.call(this, options);
      const pipe = stream.pipe;
      stream.pipe = function <T extends NodeJS.WritableStream>(this: typeof stream, destination: T, pipeOptions?: { end?: boolean }): T {
        node[RECORD]?.(carriedOver(destination));
        return pipe.call(this, destination, pipeOptions) as T;
      };
      return stream;
    };
  }
  node[RECORD] = (value) => {
    carried = value;
  };
  return () => carried;
}

function carriedOver(destination: object): Carried {
  const socket = carriedBy.get(destination);
  if (socket instanceof TLSSocket) return { tls: details(socket), offered: true };
  if (socket) return { tls: null, offered: offers.get(socket) ?? null };
  // Not a socket mailedge handed over: the TLS socket Nodemailer made on one (its STARTTLS, or implicit TLS).
  const tls = pipedInto(destination).find((d): d is TLSSocket => d instanceof TLSSocket);
  return { tls: tls ? details(tls) : { version: null, cipher: null, authorized: false }, offered: true };
}

/** Where a stream is piped: Node keeps the destinations in its readable state (an array since Node 14). */
function pipedInto(stream: object): unknown[] {
  const state = (stream as { _readableState?: { pipes?: unknown } })._readableState;
  const pipes = state?.pipes;
  return Array.isArray(pipes) ? pipes : pipes ? [pipes] : [];
}

function details(socket: TLSSocket): WireTls {
  return { version: socket.getProtocol() ?? null, cipher: socket.getCipher()?.name ?? null, authorized: socket.authorized };
}
