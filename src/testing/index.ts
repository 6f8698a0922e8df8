export { startDnsServer } from './dns-server.js';
export type { DnsFault, DnsFaultType, DnsServerOptions, FixtureDnsServer, QueryLogEntry } from './dns-server.js';
export { startReceiver, waitFor, FCRDNS_REJECT_TEXT, TEMPFAIL_TEXT, DMARC_REJECT_TEXT } from './receiver.js';
export type { Receiver, ReceiverOptions, ReceivedSession, ReceiverFaults, SmtpReply, ReceivedAuthentication } from './receiver.js';
export { startPolicyServer, policyText } from './policy-server.js';
export type { PolicyServer, PolicyServerOptions, PolicyAnswer } from './policy-server.js';
export { parseZone, loadZoneFiles, ZoneParseError } from './zone.js';
export type { ParseZoneOptions } from './zone.js';
export { WORLD_ZONE_FILE } from './fixtures.js';
// The record shapes that startDnsServer, setRecords and parseZone take and return.
export type { RecordData, ResourceRecord } from '../dns/wire.js';
