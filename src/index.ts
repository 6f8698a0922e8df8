export { createTransport, MailedgeTransporter } from './create-transport.js';
export type { EdgeInfo, MailedgeSentMessageInfo, MailedgeWarning } from './routes/route.js';
export type { DirectSentMessageInfo, DomainDelivery, DirectDeliveryError, DeliveryError } from './routes/direct.js';
export type { SmtpSendError } from './send-error.js';
export { preflight } from './preflight.js';
// Message identity (issue 11): info.authentication, err.authentication, report.authentication; preflight's sample message.
export type { Authentication } from './message/verdict.js';
export type { WireTls } from './routes/wire-tls.js';
export type { SampleMessage } from './message/predict.js';
export type { PreflightCallOptions } from './preflight.js';
export type { MailedgeOptions, EdgeOptions, EdgeDnsOptions, EdgeMode, EdgeFamily, PoolMemberOptions } from './options.js';
export { DEFAULTS } from './options.js';
export {
  MailedgeError,
  EdgeRefusedError,
  InvalidOptionError,
  PreflightFailedError,
  ERROR_CODES,
  WARNING_CODES,
  isMailedgeError,
} from './errors.js';
export type { ErrorCodeInfo } from './errors.js';
export { CODES } from './codes.js';
export type { Code, CodeInfo, CodeScope, ErrorCode, WarningCode } from './codes.js';
export type { CheckResult, CheckVerdict, CheckStatus, CheckId, PreflightReport, PoolMemberReport, PtrNameResult, Severity } from './checks/types.js';
export { DEFAULT_SEVERITY, DELIVERABILITY_CHECK_IDS } from './checks/registry.js';
export type { DeliverabilityCheckId, CheckSetting } from './checks/registry.js';
export { REPORT_SCHEMA_VERSION, toJsonReport } from './report/json.js';
export type { JsonReport } from './report/json.js';
export type { Clock } from './dns/resolver.js';
export { hostnameProblem, isValidHostname } from './checks/hostname.js';
export { VERSION } from './version.js';
