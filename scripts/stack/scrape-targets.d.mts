// Types of scrape-targets.mjs (plain JavaScript, so that scripts/start.mjs can run it without tsx).

/** Where the node target files live (the stack's prometheus.yml points its app jobs here). */
export declare const NODE_TARGETS_DIR: string;

/** Removes the target files of nodes whose process is gone; returns the files removed. */
export declare function pruneNodeTargets(): string[];

/** Lists a node for scraping until the returned function is called or its process `pid` is gone. */
export declare function registerNodeTarget(target: {
  host?: string;
  port: number;
  /** The node's NODE_ID: the `node` label of its series. */
  node: string;
  pid: number;
  /** How often its /metrics is scraped and its /ready probed (a Prometheus duration, `15s`); default the
   * local stack's interval (2 s). */
  scrapeInterval?: string;
}): () => void;
