/**
 * The socket a checked message leaves on: opened by mailedge itself, to
 * exactly the checked destination address, from exactly the checked source.
 * Nodemailer gets it through its getSocket hook and does no DNS or binding of
 * its own.
 */
import { connect, type Socket } from 'node:net';
import type { Identity } from '../identity.js';
import { markNeverConnected } from '../send-error.js';

/**
 * Connects to the identity's route addresses in turn. The source is the bound
 * localAddress, or the address the kernel chose when the edge was checked:
 * binding it keeps a route change from putting an unchecked address on the wire.
 */
export async function connectChecked(identity: Identity, port: number, localAddress: string | undefined, timeout: number): Promise<Socket> {
  const startedAt = Date.now();
  const source = localAddress ?? (identity.edge?.origin === 'kernel' ? identity.edge.address : undefined);
  let lastError: Error = new Error('no address to connect to');
  for (const address of identity.addresses) {
    const remaining = timeout - (Date.now() - startedAt);
    if (remaining <= 0) break;
    try {
      return await openSocket(address, port, source, remaining);
    } catch (err) {
      lastError = err as Error;
    }
  }
  // Nodemailer's shape for a connection that never opened: ECONNECTION (or ETIMEDOUT), the system's code kept as originalCode.
  const fields = lastError as Error & { code?: string; originalCode?: string; command?: string };
  if (fields.code !== 'ETIMEDOUT') {
    if (fields.code !== undefined && fields.code !== 'ECONNECTION') fields.originalCode = fields.code;
    fields.code = 'ECONNECTION';
  }
  fields.command = 'CONN';
  throw markNeverConnected(lastError);
}

function openSocket(host: string, port: number, localAddress: string | undefined, timeout: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, ...(localAddress ? { localAddress } : {}) });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(Object.assign(new Error(`Connection timeout to ${host}:${port}`), { code: 'ETIMEDOUT', timeoutType: 'CONNECT_TIMEOUT' }));
    }, timeout);
    const onError = (err: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', onError);
      resolve(socket);
    });
  });
}

/**
 * Holds a fresh connection until the server's first bytes (its greeting)
 * arrive, then puts them back for Nodemailer to read. The receiver chooses
 * how long its greeting takes; the name for EHLO is decided again after it,
 * not before the connect. Ends early (leaving what happened for Nodemailer to
 * see) when the socket closes, fails, or `timeout` ms pass.
 */
export function awaitGreeting(socket: Socket, timeout: number): Promise<void> {
  return new Promise((resolve) => {
    const finish = (): void => {
      clearTimeout(timer);
      socket.removeListener('readable', onReadable);
      socket.removeListener('end', finish);
      socket.removeListener('close', finish);
      socket.removeListener('error', finish);
      resolve();
    };
    const onReadable = (): void => {
      const chunk: Buffer | null = socket.read();
      if (chunk === null) return;
      finish();
      socket.unshift(chunk);
    };
    const timer = setTimeout(finish, timeout);
    socket.on('readable', onReadable);
    socket.once('end', finish);
    socket.once('close', finish);
    // Only while waiting: once Nodemailer has the socket, its own error handler takes over.
    socket.once('error', finish);
  });
}
