// The inventory console: plain DOM over the generated gRPC-Web client.
//
// Query parameters (all optional):
//   api=<origin>      the service to call (default: the page's origin)
//   product=<id>      prefills the product id
//   order=<id>        prefills the order id
//   trace=<url>       makes trace ids links; "{trace_id}" in the URL is
//                     replaced, e.g. http://localhost:16686/trace/{trace_id}

import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, type CallOptions } from "@connectrpc/connect";
import { createInventoryClient, serviceBaseUrl, traced } from "./client";
import { describeError } from "./errors";
import {
  ReservationStatus,
  type InventoryHistoryEntry,
  type Reservation,
} from "./gen/inventory/v1/inventory_pb";

const params = new URLSearchParams(window.location.search);
const baseUrl = serviceBaseUrl(window.location);
const client = createInventoryClient(baseUrl);
const traceUrlTemplate = traceTemplate(params.get("trace"));

/** Input labels by proto field name, for validation errors. */
const LABELS: Record<string, string> = {
  product_id: "Product id",
  order_id: "Order id",
  quantity: "Quantity",
  required_quantity: "Quantity",
  reservation_timeout: "Timeout (seconds)",
  operation: "Operation",
  expected_version: "Expected version",
  page_size: "Page size",
  page_token: "Page token",
  request_id: "Request id",
};

const MAX_CALLS_SHOWN = 30;

function byId<T extends HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (!element) {
    throw new Error(`#${id} is missing from the page`);
  }
  return element as T;
}

function traceTemplate(value: string | null): string | undefined {
  if (!value || !value.includes("{trace_id}")) {
    return undefined;
  }
  try {
    const protocol = new URL(value.replace("{trace_id}", "0")).protocol;
    return protocol === "http:" || protocol === "https:" ? value : undefined;
  } catch {
    return undefined;
  }
}

const productInput = byId<HTMLInputElement>("product-id");
const orderInput = byId<HTMLInputElement>("order-id");
const outcome = byId<HTMLDivElement>("outcome");
const outcomeMessage = byId<HTMLParagraphElement>("outcome-message");
const outcomeTrace = byId<HTMLParagraphElement>("outcome-trace");
const outcomeTraceId = byId<HTMLElement>("outcome-trace-id");
const calls = byId<HTMLOListElement>("calls");

// ---- small helpers -------------------------------------------------------

function text(value: string | number | bigint): string {
  return String(value);
}

function formatTime(ts: Timestamp | undefined): string {
  if (!ts) {
    return "—";
  }
  return timestampDate(ts).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function formatJson(value: JsonValue): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

function formatMetadata(metadata: JsonObject | undefined): string {
  if (!metadata) {
    return "";
  }
  return Object.entries(metadata)
    .map(([key, value]) => `${key}=${formatJson(value)}`)
    .join(", ");
}

function statusName(status: ReservationStatus): string {
  const name = ReservationStatus[status] as string | undefined;
  return name ? name.replace(/^RESERVATION_STATUS_/, "").toLowerCase() : String(status);
}

function signed(n: number): string {
  return n > 0 ? `+${n}` : String(n);
}

function cell(row: HTMLTableRowElement, value: string): HTMLTableCellElement {
  const td = row.insertCell();
  td.textContent = value;
  return td;
}

/** A trace id as code, or as a link when `?trace=` gives a URL template. */
function traceElement(traceId: string): HTMLElement {
  const code = document.createElement("code");
  code.textContent = traceId;
  if (!traceUrlTemplate) {
    return code;
  }
  const link = document.createElement("a");
  link.href = traceUrlTemplate.replace("{trace_id}", encodeURIComponent(traceId));
  link.target = "_blank";
  link.rel = "noopener noreferrer";
  link.append(code);
  return link;
}

// ---- reading inputs ------------------------------------------------------

/** A field the person must fix before anything is sent. */
class InputError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

const INT32_MAX = 2_147_483_647;

/** An int32 from a number input; empty is 0 (the proto default). */
function int32(input: HTMLInputElement, field: string): number {
  const raw = input.value.trim();
  if (raw === "") {
    if (input.validity.badInput) {
      throw new InputError(field, `${LABELS[field] ?? field}: must be a whole number.`);
    }
    return 0;
  }
  if (!/^-?\d+$/.test(raw)) {
    throw new InputError(field, `${LABELS[field] ?? field}: must be a whole number, got ${raw}.`);
  }
  const value = Number(raw);
  if (Math.abs(value) > INT32_MAX) {
    throw new InputError(field, `${LABELS[field] ?? field}: must be at most ${INT32_MAX}, got ${raw}.`);
  }
  return value;
}

/** An optional int64 from a number input; empty is absent. */
function optionalInt64(input: HTMLInputElement, field: string): bigint | undefined {
  const raw = input.value.trim();
  if (raw === "" && !input.validity.badInput) {
    return undefined;
  }
  if (!/^-?\d+$/.test(raw)) {
    throw new InputError(field, `${LABELS[field] ?? field}: must be a whole number or empty.`);
  }
  return BigInt(raw);
}

/** The input of `form` (or the shared product and order inputs) for a proto field. */
function inputFor(form: HTMLFormElement, field: string): HTMLElement | undefined {
  if (field === "product_id") {
    return productInput;
  }
  if (field === "order_id") {
    return orderInput;
  }
  const named = form.elements.namedItem(field);
  return named instanceof HTMLElement ? named : undefined;
}

function markInvalid(input: HTMLElement): void {
  input.setAttribute("aria-invalid", "true");
  const described = (input.getAttribute("aria-describedby") ?? "").split(/\s+/).filter(Boolean);
  if (!described.includes("outcome-message")) {
    input.setAttribute("aria-describedby", [...described, "outcome-message"].join(" "));
  }
}

function clearInvalid(): void {
  for (const input of document.querySelectorAll<HTMLElement>("[aria-invalid=true]")) {
    input.removeAttribute("aria-invalid");
    const described = (input.getAttribute("aria-describedby") ?? "")
      .split(/\s+/)
      .filter((id) => id && id !== "outcome-message");
    if (described.length > 0) {
      input.setAttribute("aria-describedby", described.join(" "));
    } else {
      input.removeAttribute("aria-describedby");
    }
  }
}

// ---- showing results -----------------------------------------------------

type Kind = "ok" | "error";

function showOutcome(kind: Kind, message: string, traceId: string | undefined): void {
  outcome.dataset["kind"] = kind;
  outcomeMessage.textContent = message;
  outcomeTraceId.replaceChildren();
  if (traceId) {
    outcomeTraceId.append(traceElement(traceId));
    outcomeTrace.hidden = false;
  } else {
    outcomeTrace.hidden = true;
  }
}

function logCall(method: string, code: Code | undefined, traceId: string | undefined): void {
  const item = document.createElement("li");
  item.className = code === undefined ? "ok" : "error";
  const time = new Date().toISOString().slice(11, 19);
  item.append(`${time} ${method}: ${code === undefined ? "OK" : Code[code]}`);
  if (traceId) {
    item.append(" · trace ", traceElement(traceId));
  } else {
    item.append(" · no trace id");
  }
  calls.prepend(item);
  while (calls.children.length > MAX_CALLS_SHOWN) {
    calls.lastElementChild?.remove();
  }
}

interface StockView {
  productId: string;
  currentQuantity: number;
  reservedQuantity: number;
  availableQuantity: number;
  version?: bigint;
  updatedAt?: Timestamp;
}

function showStock(stock: StockView): void {
  byId("stock-product").textContent = stock.productId;
  byId("stock-current").textContent = text(stock.currentQuantity);
  byId("stock-reserved").textContent = text(stock.reservedQuantity);
  byId("stock-available").textContent = text(stock.availableQuantity);
  if (stock.version !== undefined) {
    byId("stock-version").textContent = text(stock.version);
  }
  if (stock.updatedAt !== undefined) {
    byId("stock-updated").textContent = formatTime(stock.updatedAt);
  }
  byId("stock").hidden = false;
}

function showReservations(orderId: string, reservations: Reservation[]): void {
  const body = byId<HTMLTableSectionElement>("reservations-body");
  body.replaceChildren();
  for (const r of reservations) {
    const row = body.insertRow();
    cell(row, r.productId);
    cell(row, statusName(r.status));
    cell(row, text(r.quantity));
    cell(row, text(r.heldQuantity));
    cell(row, text(r.committedQuantity));
    cell(row, formatTime(r.expiresAt)).className = "time";
    cell(row, r.reservationId).className = "id";
  }
  byId("reservations-heading").textContent = `Reservations of order ${orderId}`;
  byId("reservations").hidden = false;
}

// ---- running calls -------------------------------------------------------

const busy = new WeakSet<HTMLFormElement>();

interface Action<T> {
  method: string;
  form: HTMLFormElement;
  /** Reads the inputs (may throw InputError) and makes the call. */
  call: (options: CallOptions) => Promise<T>;
  /** The sentence for a success. */
  done: (value: T) => string;
  /** What else to show on success. */
  then?: (value: T) => void | Promise<void>;
}

/**
 * Runs one call for a form: marks the form busy (a second submit is ignored
 * meanwhile), shows the outcome with its trace id in the live region, logs
 * it, and on a field error marks and focuses the input at fault.
 */
async function act<T>(action: Action<T>): Promise<void> {
  const { form } = action;
  if (busy.has(form)) {
    return;
  }
  busy.add(form);
  form.setAttribute("aria-busy", "true");
  clearInvalid();
  try {
    // Inputs are read while the request is built, before anything is sent.
    let inputError = undefined as InputError | undefined;
    const result = await traced((options) => {
      try {
        return action.call(options);
      } catch (e) {
        if (e instanceof InputError) {
          inputError = e;
        }
        throw e;
      }
    });
    if (inputError) {
      showOutcome("error", `${inputError.message} Nothing was sent.`, undefined);
      const input = inputFor(form, inputError.field);
      if (input) {
        markInvalid(input);
        input.focus();
      }
      return;
    }
    logCall(action.method, result.ok ? undefined : result.error.code, result.traceId);
    if (result.ok) {
      showOutcome("ok", action.done(result.value), result.traceId);
      await action.then?.(result.value);
    } else {
      const described = describeError(result.error, baseUrl, LABELS);
      showOutcome("error", described.message, result.traceId);
      const input = described.field ? inputFor(form, described.field) : undefined;
      if (input) {
        markInvalid(input);
        input.focus();
      }
    }
  } finally {
    busy.delete(form);
    form.removeAttribute("aria-busy");
  }
}

/** Reads a product's stock again after a change; logged, not announced. */
async function refreshStock(productId: string): Promise<void> {
  const result = await traced((options) => client.checkInventory({ productId }, options));
  logCall("CheckInventory", result.ok ? undefined : result.error.code, result.traceId);
  if (result.ok) {
    showStock(result.value);
  }
}

function onSubmit(id: string, handler: (form: HTMLFormElement) => Promise<void>): void {
  const form = byId<HTMLFormElement>(id);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void handler(form);
  });
}

// ---- the forms -----------------------------------------------------------

onSubmit("product-form", (form) =>
  act({
    method: "CheckInventory",
    form,
    call: (options) => client.checkInventory({ productId: productInput.value.trim() }, options),
    done: (r) =>
      `${r.productId}: ${r.availableQuantity} available (${r.currentQuantity} on hand, ${r.reservedQuantity} reserved), version ${r.version}.`,
    then: (r) => showStock(r),
  }),
);

onSubmit("order-form", (form) =>
  act({
    method: "ListReservations",
    form,
    call: (options) => client.listReservations({ orderId: orderInput.value.trim() }, options),
    done: (r) => {
      const n = r.reservations.length;
      return `Order ${orderInput.value.trim()} has ${n} reservation${n === 1 ? "" : "s"}.`;
    },
    then: (r) => showReservations(orderInput.value.trim(), r.reservations),
  }),
);

onSubmit("reserve-form", (form) => {
  const quantity = byId<HTMLInputElement>("reserve-quantity");
  const timeout = byId<HTMLInputElement>("reserve-timeout");
  return act({
    method: "ReserveInventory",
    form,
    call: (options) =>
      client.reserveInventory(
        {
          productId: productInput.value.trim(),
          orderId: orderInput.value.trim(),
          quantity: int32(quantity, "quantity"),
          reservationTimeout: int32(timeout, "reservation_timeout"),
        },
        options,
      ),
    done: (r) =>
      `Reserved ${r.reservation?.quantity ?? ""} of ${r.reservation?.productId ?? ""} for order ${r.reservation?.orderId ?? ""} until ${formatTime(r.expiresAt)}: ${r.availableQuantity} available, ${r.reservedQuantity} reserved.`,
    then: async (r) => {
      showStock({ ...r, productId: r.reservation?.productId ?? productInput.value.trim() });
      await refreshStock(r.reservation?.productId ?? productInput.value.trim());
    },
  });
});

onSubmit("release-form", (form) => {
  const quantity = byId<HTMLInputElement>("release-quantity");
  return act({
    method: "ReleaseInventory",
    form,
    call: (options) =>
      client.releaseInventory(
        {
          productId: productInput.value.trim(),
          orderId: orderInput.value.trim(),
          quantity: int32(quantity, "quantity"),
        },
        options,
      ),
    done: (r) =>
      r.releasedQuantity > 0
        ? `Released ${r.releasedQuantity} of ${r.reservation?.productId ?? ""} for order ${r.reservation?.orderId ?? ""}: ${r.availableQuantity} available, ${r.reservedQuantity} reserved; the reservation is ${statusName(r.reservation?.status ?? ReservationStatus.UNSPECIFIED)}.`
        : `Nothing released: ${r.message}.`,
    then: async (r) => {
      const productId = r.reservation?.productId ?? productInput.value.trim();
      showStock({ ...r, productId });
      await refreshStock(productId);
    },
  });
});

onSubmit("commit-form", (form) => {
  const quantity = byId<HTMLInputElement>("commit-quantity");
  return act({
    method: "CommitReservation",
    form,
    call: (options) =>
      client.commitReservation(
        {
          productId: productInput.value.trim(),
          orderId: orderInput.value.trim(),
          quantity: int32(quantity, "quantity"),
        },
        options,
      ),
    done: (r) =>
      r.committedQuantity > 0
        ? `Committed ${r.committedQuantity} of ${r.reservation?.productId ?? ""} for order ${r.reservation?.orderId ?? ""}: ${r.currentQuantity} on hand, ${r.reservedQuantity} reserved; the reservation is ${statusName(r.reservation?.status ?? ReservationStatus.UNSPECIFIED)}.`
        : `Nothing committed: ${r.message}.`,
    then: async (r) => {
      const productId = r.reservation?.productId ?? productInput.value.trim();
      showStock({ ...r, productId });
      await refreshStock(productId);
    },
  });
});

onSubmit("restock-form", (form) => {
  const operation = byId<HTMLSelectElement>("restock-operation");
  const quantity = byId<HTMLInputElement>("restock-quantity");
  const version = byId<HTMLInputElement>("restock-version");
  return act({
    method: "UpdateInventory",
    form,
    call: (options) =>
      client.updateInventory(
        {
          productId: productInput.value.trim(),
          operation: operation.value,
          quantity: int32(quantity, "quantity"),
          expectedVersion: optionalInt64(version, "expected_version"),
        },
        options,
      ),
    done: (r) =>
      `${r.productId}: stock on hand ${r.previousQuantity} → ${r.currentQuantity} (${signed(r.quantityChange)})${r.created ? ", product created" : ""}; version ${r.version}.`,
    then: async (r) => {
      showStock(r);
      await refreshStock(r.productId);
    },
  });
});

// ---- history, one page at a time -------------------------------------------

const history = {
  productId: "",
  page: 0,
  nextPageToken: "",
};
const historyNext = byId<HTMLButtonElement>("history-next");
const historyForm = byId<HTMLFormElement>("history-form");

function showHistory(entries: InventoryHistoryEntry[]): void {
  const body = byId<HTMLTableSectionElement>("history-body");
  body.replaceChildren();
  for (const entry of entries) {
    const row = body.insertRow();
    cell(row, formatTime(entry.createdAt)).className = "time";
    cell(row, entry.operationType);
    cell(row, signed(entry.quantityChange));
    cell(row, entry.orderId || "—");
    cell(row, formatMetadata(entry.metadata)).className = "details";
  }
  const last = history.nextPageToken === "";
  byId("history-caption").textContent =
    `${history.productId}, page ${history.page}, newest first: ${entries.length} entr${entries.length === 1 ? "y" : "ies"}${last ? " (last page)" : ""}.`;
  byId("history").hidden = false;
  historyNext.disabled = last;
}

function loadHistory(first: boolean): Promise<void> {
  const pageSize = byId<HTMLInputElement>("history-page-size");
  const productId = first ? productInput.value.trim() : history.productId;
  const pageToken = first ? "" : history.nextPageToken;
  return act({
    method: "GetInventoryHistory",
    form: historyForm,
    call: (options) =>
      client.getInventoryHistory({ productId, pageSize: int32(pageSize, "page_size"), pageToken }, options),
    done: (r) =>
      `History of ${productId}, page ${first ? 1 : history.page + 1}: ${r.entries.length} entr${r.entries.length === 1 ? "y" : "ies"}${r.nextPageToken ? "; more on the next page" : ""}.`,
    then: (r) => {
      history.productId = productId;
      history.page = first ? 1 : history.page + 1;
      history.nextPageToken = r.nextPageToken;
      showHistory(r.entries);
    },
  });
}

onSubmit("history-form", () => loadHistory(true));
historyNext.addEventListener("click", () => {
  if (history.nextPageToken) {
    void loadHistory(false);
  }
});

// ---- start ---------------------------------------------------------------

byId("service-url").textContent = baseUrl;
productInput.value = params.get("product") ?? "";
orderInput.value = params.get("order") ?? "";
document.documentElement.dataset["ready"] = "true";
