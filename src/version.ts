/**
 * The package version, for Nodemailer's getVersionString() and the CLI. A
 * constant rather than a read of package.json: the CommonJS and ESM builds sit
 * at different depths, and a library should not touch the file system on
 * import. test/version.test.ts keeps it equal to package.json.
 */
export const VERSION = '0.1.0';
