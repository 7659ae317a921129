// Types of service-flags.mjs (plain JavaScript, so that scripts/start.mjs can run it without tsx).

/** Node's flags of every app node this project starts; docker/Dockerfile's CMD repeats them. */
export declare const SERVICE_NODE_FLAGS: readonly string[];
