/**
 * The service's domain: orders, outcomes, the ports to the rest of the system and the purchase stages. Both
 * the actors and the purchase paths import it; it imports nothing outside itself (npm run lint checks).
 */
export * from './errors.js';
export * from './orders.js';
export * from './outcomes.js';
export * from './ports.js';
export * from './stages.js';
