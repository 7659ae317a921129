/** @deprecated kept for the merge: import from scripts/chaos/checks.ts */
export { readTruth } from '../../scripts/chaos/checks.js';
