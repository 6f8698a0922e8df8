import { fileURLToPath } from 'node:url';

/** The zone file of the test world shipped with the package (also used by the demo). */
export const WORLD_ZONE_FILE = fileURLToPath(new URL('../../fixtures/zones/world.zone', import.meta.url));
