// The generated TypeScript client from Node.js (no browser): the same
// Connect-ES client and generated service descriptor the console uses, over
// gRPC-Web with Node's own fetch. The end-to-end test bundles this file
// with esbuild and calls run() against the service it started; the README's
// Node example is this code.

import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ErrorInfoSchema } from "../src/gen/google/rpc/error_details_pb";
import { InventoryService, StockChangeKind } from "../src/gen/inventory/v1/inventory_pb";

export interface NodeCallResult {
  /** Stock on hand of the product. */
  current: number;
  /** The ErrorInfo reason of an over-large reservation. */
  refusal: string;
  /** What the refusal said was available. */
  available: string;
  /** The kind of the event a watch of the product saw for its reservation. */
  watched: string;
  /** The available stock that event reported. */
  watchedAvailable: number;
}

export async function run(baseUrl: string, productId: string): Promise<NodeCallResult> {
  const client = createClient(InventoryService, createGrpcWebTransport({ baseUrl }));
  const stock = await client.checkInventory({ productId, requiredQuantity: 1 });
  try {
    await client.reserveInventory({ productId, quantity: 1_000_000, orderId: "node-client" });
    throw new Error("an over-large reservation was accepted");
  } catch (error) {
    const refused = ConnectError.from(error);
    if (refused.code !== Code.FailedPrecondition) {
      throw refused;
    }
    const info = refused.findDetails(ErrorInfoSchema)[0];
    const seen = await watchOwnReservation(client, productId);
    return {
      current: stock.currentQuantity,
      refusal: info?.reason ?? "",
      available: info?.metadata["available"] ?? "",
      ...seen,
    };
  }
}

/**
 * Reserves one unit, then follows the product's changes from the oldest
 * kept (a server stream over gRPC-Web) until the reservation's event
 * arrives; gives the unit back.
 */
async function watchOwnReservation(
  client: ReturnType<typeof createClient<typeof InventoryService>>,
  productId: string,
): Promise<{ watched: string; watchedAvailable: number }> {
  const orderId = "node-watch";
  await client.reserveInventory({ productId, quantity: 1, orderId });
  const abort = new AbortController();
  try {
    const events = client.watchInventory(
      { productIds: [productId], after: 0n },
      { signal: abort.signal, timeoutMs: 10_000 },
    );
    for await (const event of events) {
      if (event.orderId === orderId) {
        return {
          watched: StockChangeKind[event.kind],
          watchedAvailable: event.stock?.availableQuantity ?? -1,
        };
      }
    }
    throw new Error("the watch ended without the reservation's event");
  } finally {
    abort.abort();
    await client.releaseInventory({ productId, orderId });
  }
}
