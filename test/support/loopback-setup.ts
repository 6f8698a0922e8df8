/**
 * Vitest global setup: before any test file starts, check that every loopback
 * address the suite binds exists here, and stop with the command that adds
 * the missing ones (macOS) instead of a scatter of EADDRNOTAVAIL failures.
 */
import { loopbackAddressesInSources, missingLoopbackAddresses } from './loopback.js';

export default async function setup(): Promise<void> {
  const missing = await missingLoopbackAddresses(loopbackAddressesInSources());
  if (missing.length === 0) return;
  const v4 = missing.filter((a) => !a.includes(':'));
  const lines = [
    `The test suite binds loopback addresses this machine does not have: ${missing.join(', ')}.`,
    ...(v4.length > 0
      ? [
          'On macOS, only 127.0.0.1 is on lo0 by default. Add the others (until the next reboot) with:',
          `  for a in ${v4.join(' ')}; do sudo ifconfig lo0 alias "$a" up; done`,
        ]
      : []),
    ...(missing.includes('::1') ? ['IPv6 loopback (::1) is missing: enable IPv6 on the loopback interface.'] : []),
    'See "Running the tests" in the README.',
  ];
  throw new Error(lines.join('\n'));
}
