/** The bench's MySQL and Redis clients: scripts/stores.ts (shared with the cluster launcher and the chaos checks). */
export * from '../scripts/stores.js';
