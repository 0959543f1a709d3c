import { useEffect, useState } from "react";
import { authHeaders } from "./useAuth";

/** The models a new chat may use, and the one the server picks when none is named. */
export interface Models {
  models: string[];
  default: string | null;
}

const MAX_MODELS = 100;

function parse(body: unknown): Models | null {
  if (typeof body !== "object" || body === null || !("models" in body) || !Array.isArray(body.models)) return null;
  const models = body.models.filter((m): m is string => typeof m === "string" && m !== "").slice(0, MAX_MODELS);
  const preferred = "default" in body && typeof body.default === "string" ? body.default : null;
  return { models, default: preferred !== null && models.includes(preferred) ? preferred : null };
}

/**
 * `GET /api/models`: the list a server started with `--allowed-models` allows. A server
 * without the route, or with one model, gets no picker (null).
 */
export function useModels(): Models | null {
  const [models, setModels] = useState<Models | null>(null);
  useEffect(() => {
    let stale = false;
    fetch("/api/models", { headers: authHeaders() })
      .then((r) => (r.ok ? r.json() : null))
      .then((body: unknown) => {
        const list = parse(body);
        if (!stale && list && list.models.length > 1) setModels(list);
      })
      .catch(() => {});
    return () => {
      stale = true;
    };
  }, []);
  return models;
}
