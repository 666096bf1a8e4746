// One alert stream for the whole app (GET /api/v1/alerts/stream, server-sent events): pages subscribe to
// it while they are shown, and the top bar shows whether it is connected.

import { followStream, parseJson, type StreamEvent } from "./api";

export const ALERT_STREAM_PATH = "/alerts/stream";

type Listener = (alert: Record<string, unknown>, event: StreamEvent) => void;
type StateListener = (state: "open" | "closed" | "error", detail?: string) => void;

const listeners = new Set<Listener>();
const stateListeners = new Set<StateListener>();
let abort: AbortController | null = null;
let received = 0;

export function startAlertStream(): void {
  stopAlertStream();
  abort = new AbortController();
  void followStream(
    ALERT_STREAM_PATH,
    (event) => {
      if (event.event !== "alert" && event.event !== "message") return;
      let alert: unknown;
      try {
        alert = parseJson(event.data);
      } catch {
        return;
      }
      if (!alert || typeof alert !== "object") return;
      received += 1;
      for (const listener of listeners) listener(alert as Record<string, unknown>, event);
    },
    abort.signal,
    (state, detail) => {
      for (const listener of stateListeners) listener(state, detail);
    },
  );
}

export function stopAlertStream(): void {
  abort?.abort();
  abort = null;
}

/** Calls ``listener`` for every alert the stream delivers until ``signal`` aborts. */
export function onAlert(listener: Listener, signal: AbortSignal): void {
  listeners.add(listener);
  signal.addEventListener("abort", () => listeners.delete(listener));
}

export function onStreamState(listener: StateListener): void {
  stateListeners.add(listener);
}

export function alertsReceived(): number {
  return received;
}
