// Turns a failed call into a sentence for a person: the service's own
// message, made precise with the google.rpc details it sends in
// grpc-status-details-bin (ErrorInfo reason and metadata, BadRequest field).

import { Code, ConnectError } from "@connectrpc/connect";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  PreconditionFailureSchema,
} from "./gen/google/rpc/error_details_pb";

export interface Described {
  /** What to tell the person. */
  message: string;
  /** The request field at fault (proto name, such as `quantity`), if any. */
  field?: string;
  /** The ErrorInfo reason, such as INSUFFICIENT_STOCK, if any. */
  reason?: string;
}

/** Whether the call never got an answer from the service. */
function unreachable(error: ConnectError): boolean {
  // fetch() rejects with a TypeError when nothing answers (connection
  // refused, DNS, CORS refusal); a proxy in front of a stopped service
  // answers 502/503/504, which Connect maps to UNAVAILABLE without details.
  if (error.cause instanceof TypeError) {
    return true;
  }
  return error.code === Code.Unavailable && error.findDetails(ErrorInfoSchema).length === 0;
}

function capitalize(text: string): string {
  return text.length === 0 ? text : text[0].toUpperCase() + text.slice(1);
}

/**
 * Describes `error` for the person who made the call. `labels` names the
 * inputs by proto field, so a validation error speaks of what they typed.
 */
export function describeError(error: ConnectError, baseUrl: string, labels: Record<string, string>): Described {
  if (unreachable(error)) {
    return {
      message: `The service cannot be reached at ${baseUrl}: it may be stopped or restarting. Nothing was done; try again in a moment.`,
    };
  }
  if (error.code === Code.DeadlineExceeded) {
    return { message: "The service did not answer in time. The call may or may not have been applied: look the product up again before retrying." };
  }
  if (error.code === Code.Canceled) {
    return { message: "The call was cancelled." };
  }

  const info = error.findDetails(ErrorInfoSchema)[0];
  const reason = info?.reason;
  const meta = info?.metadata ?? {};
  const raw = capitalize(error.rawMessage);

  if (error.code === Code.InvalidArgument) {
    const violation = error.findDetails(BadRequestSchema)[0]?.fieldViolations[0];
    const field = violation?.field || meta["field"];
    if (field) {
      const label = labels[field] ?? field;
      const prefix = `${field}: `;
      const why =
        violation?.description ||
        (error.rawMessage.startsWith(prefix) ? error.rawMessage.slice(prefix.length) : error.rawMessage);
      return { message: `${label}: ${why}.`, field, reason };
    }
    return { message: `Invalid request: ${error.rawMessage}.`, reason };
  }

  switch (reason) {
    case "INSUFFICIENT_STOCK": {
      if (meta["available"] !== undefined) {
        const product = meta["product_id"] ? ` of ${meta["product_id"]}` : "";
        return {
          message: `Not enough stock${product}: only ${meta["available"]} available, ${meta["requested"] ?? "more"} requested. Nothing was reserved.`,
          field: "quantity",
          reason,
        };
      }
      const shortages = error
        .findDetails(PreconditionFailureSchema)
        .flatMap((failure) => failure.violations)
        .map((v) => `${v.subject}: ${v.description}`);
      if (shortages.length > 0) {
        return { message: `Not enough stock (${shortages.join("; ")}). Nothing was reserved.`, reason };
      }
      return { message: raw, reason };
    }
    case "DATABASE_UNAVAILABLE":
      return {
        message: "The service is up but its database is unavailable (down, or refusing writes): retry later.",
        reason,
      };
    case "VERSION_MISMATCH":
      return {
        message: `The product is at version ${meta["current_version"] ?? "?"}, not ${meta["expected_version"] ?? "the one expected"}: nothing was changed. Look it up again.`,
        field: "expected_version",
        reason,
      };
  }
  if (error.code === Code.Unavailable) {
    return { message: `The service is unavailable: ${error.rawMessage}. Retry later.`, reason };
  }
  return { message: raw.endsWith(".") ? raw : `${raw}.`, reason };
}
