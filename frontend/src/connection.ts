// What the header's indicator shows: whether the API answers, whether the live stream is open,
// and whether the API asked for a key. A tiny store, read with useSyncExternalStore.
import { useSyncExternalStore } from "react";

export interface ConnectionState {
  api: "unknown" | "up" | "down";
  stream: "connecting" | "open" | "reconnecting";
  authRequired: boolean;
}

type Listener = () => void;

class ConnectionStore {
  private state: ConnectionState = { api: "unknown", stream: "connecting", authRequired: false };
  private listeners = new Set<Listener>();

  get = (): ConnectionState => this.state;

  set(patch: Partial<ConnectionState>): void {
    const next = { ...this.state, ...patch };
    if ((Object.keys(patch) as (keyof ConnectionState)[]).every((k) => next[k] === this.state[k])) return;
    this.state = next;
    this.listeners.forEach((listener) => listener());
  }

  subscribe = (listener: Listener): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };
}

export const connection = new ConnectionStore();

export function useConnection(): ConnectionState {
  return useSyncExternalStore(connection.subscribe, connection.get);
}
