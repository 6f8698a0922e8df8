/**
 * What a receiver would write about one message (RFC 8601): the contract of
 * info.authentication, err.authentication and report.authentication.
 */
import type { SpfResultName } from '../checks/mailauth.js';
import type { DkimResultName } from './dkim.js';
import type { DmarcPolicy } from './dmarc-record.js';

/** The contract `info.authentication` / `err.authentication` carry (scripts compare it with real receivers' headers). */
export interface Authentication {
  spf: { result: SpfResultName | null; domain: string; reason?: string };
  dkim: Array<{ result: DkimResultName; domain: string; selector: string; reason?: string }>;
  dmarc: {
    result: 'pass' | 'fail' | 'none' | 'temperror' | 'permerror' | null;
    domain: string | null;
    policy: DmarcPolicy | null;
    alignedBy: 'dkim' | 'spf' | null;
    reason?: string;
  };
  header: string;
}
