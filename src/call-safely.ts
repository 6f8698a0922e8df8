/**
 * Runs a callback that leads into user code (a sendMail or verify callback,
 * a logger, Nodemailer's socket callback): a throw there is user code's, and
 * must reach neither a promise chain (an unhandled rejection crashes Node)
 * nor the process.
 */
export function callSafely(run: () => void): void {
  try {
    run();
  } catch {
    // Already logged where there is a logger to log to (Nodemailer, the transport); never rethrown.
  }
}
