/**
 * The stages of a purchase whose latency is measured: queue (arrival at the product's actors → reserved),
 * reserve_commit (its batch handed to the commit pipeline → committed), payment (the saga's payment step),
 * confirm_commit (the confirm settlement sent to the product's writer → committed), reply (the whole
 * purchase as its node routes it: routed to the product → the saga's end handed back for the answer).
 */
export const PURCHASE_STAGES = ['queue', 'reserve_commit', 'payment', 'confirm_commit', 'reply'] as const;
export type PurchaseStage = (typeof PURCHASE_STAGES)[number];

/** Where the purchase path reports a stage's duration (seconds), `count` purchases at once (default 1). */
export type StageObserver = (stage: PurchaseStage, seconds: number, count?: number) => void;
