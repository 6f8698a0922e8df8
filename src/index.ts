export { createTransport, MailedgeTransport } from './transport.js';
export type { EdgeInfo, MailedgeSentMessageInfo, MailedgeWarning, SendCallback } from './transport.js';
export { preflight } from './preflight.js';
export type { PreflightCallOptions } from './preflight.js';
export type { MailedgeOptions, EdgeOptions, EdgeDnsOptions, EdgeMode, EdgeFamily, PoolMemberOptions } from './options.js';
export type { DirectSentMessageInfo, DomainDelivery } from './direct.js';
export { DEFAULTS } from './options.js';
export {
  MailedgeError,
  EdgeRefusedError,
  SendFailedError,
  InvalidOptionError,
  PreflightFailedError,
  ERROR_CODES,
  WARNING_CODES,
  isMailedgeError,
} from './errors.js';
export type { ErrorCode, WarningCode, ErrorCodeInfo } from './errors.js';
export type { CheckResult, CheckVerdict, CheckStatus, CheckId, PreflightReport, PoolMemberReport, PtrNameResult, Severity } from './checks/types.js';
export { DEFAULT_SEVERITY, DELIVERABILITY_CHECK_IDS } from './checks/registry.js';
export type { DeliverabilityCheckId, CheckSetting } from './checks/registry.js';
export { REPORT_SCHEMA_VERSION, toJsonReport } from './report/json.js';
export type { JsonReport } from './report/json.js';
export type { Clock } from './dns/resolver.js';
export { hostnameProblem, isValidHostname } from './checks/hostname.js';
