// The generated Connect-ES client of InventoryService over gRPC-Web, and a
// wrapper that reports each call's trace id (the `x-trace-id` response
// header) whether the call succeeds or fails.

import { createClient, ConnectError, type CallOptions, type Client } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { InventoryService } from "./gen/inventory/v1/inventory_pb";

/** The response header carrying the server span's trace id. */
export const TRACE_ID_HEADER = "x-trace-id";

/** How long a call may take before it fails with DEADLINE_EXCEEDED. */
const CALL_TIMEOUT_MS = 15_000;

export type Inventory = Client<typeof InventoryService>;

/**
 * The service's base URL: `?api=<http(s) origin>` when given (the console
 * served from elsewhere, as in the end-to-end test's static mode), else the
 * page's own origin, which serves both the console and gRPC-Web.
 */
export function serviceBaseUrl(location: Location): string {
  const api = new URLSearchParams(location.search).get("api");
  if (api) {
    try {
      const url = new URL(api);
      if (url.protocol === "http:" || url.protocol === "https:") {
        return url.origin;
      }
    } catch {
      // Not a URL: fall back to the page's origin.
    }
  }
  return location.origin;
}

export function createInventoryClient(baseUrl: string): Inventory {
  const transport = createGrpcWebTransport({
    baseUrl,
    defaultTimeoutMs: CALL_TIMEOUT_MS,
  });
  return createClient(InventoryService, transport);
}

/** The outcome of one call: its value or its error, and its trace id. */
export type CallResult<T> =
  | { ok: true; value: T; traceId: string | undefined }
  | { ok: false; error: ConnectError; traceId: string | undefined };

/**
 * Runs one call with call options that record the response headers, and
 * never throws: a failure is returned as a ConnectError. The trace id comes
 * from the response headers on success and from the error's metadata
 * (headers and trailers) on failure; a call that never reached the service
 * has none.
 */
export async function traced<T>(run: (options: CallOptions) => Promise<T>): Promise<CallResult<T>> {
  let traceId: string | undefined;
  const options: CallOptions = {
    onHeader(headers) {
      traceId = headers.get(TRACE_ID_HEADER) ?? traceId;
    },
  };
  try {
    const value = await run(options);
    return { ok: true, value, traceId };
  } catch (e) {
    const error = ConnectError.from(e);
    traceId = error.metadata.get(TRACE_ID_HEADER) ?? traceId;
    return { ok: false, error, traceId };
  }
}
