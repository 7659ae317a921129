/** The chaos checks moved to scripts/chaos/checks.ts; here for ws-fanout's import until the merge. */
export { readTruth } from '../../scripts/chaos/checks.js';
