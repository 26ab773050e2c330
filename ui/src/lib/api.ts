// The REST client: JSON in and out. The access token is kept in memory only; the
// refresh token lives in an HttpOnly cookie this code never sees (cookie mode, asked
// for with X-Refresh-Cookie: 1; docs/ui.md). Errors arrive as the API's envelope
// {"error": {code, message, details}}.

export interface ApiErrorBody {
  code: string;
  message: string;
  details?: unknown;
}

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details: unknown;

  constructor(status: number, body: ApiErrorBody) {
    super(body.message);
    this.status = status;
    this.code = body.code;
    this.details = body.details;
  }
}

export interface TokenResponse {
  access_token: string;
  refresh_token: string;
  token_type: string;
  expires_at: string;
  user: { id: string; username: string; email: string; is_admin?: boolean };
}

type Listener = () => void;

/** The signed-in session: the access token lives in this object and nowhere else. */
class Session {
  accessToken: string | null = null;
  user: TokenResponse["user"] | null = null;
  private listeners = new Set<Listener>();

  set(grant: TokenResponse): void {
    this.accessToken = grant.access_token;
    this.user = grant.user;
    this.emit();
  }

  /** The account changed (profile saved): the same session, new details. */
  setUser(user: TokenResponse["user"]): void {
    this.user = user;
    this.emit();
  }

  clear(): void {
    this.accessToken = null;
    this.user = null;
    this.emit();
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(): void {
    for (const listener of this.listeners) listener();
  }
}

export const session = new Session();

const COOKIE_MODE = { "X-Refresh-Cookie": "1" };

/** A body sent as it is (a form, text), with its type; FormData sets its own. */
export class RawBody {
  constructor(
    readonly data: BodyInit,
    readonly contentType?: string,
  ) {}
}

async function send(
  method: string,
  path: string,
  body?: unknown,
  token?: string | null,
  signal?: AbortSignal,
) {
  const headers: Record<string, string> = { Accept: "application/json", ...COOKIE_MODE };
  if (body instanceof RawBody) {
    if (body.contentType) headers["Content-Type"] = body.contentType;
  } else if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  const data = body instanceof RawBody ? body.data : body === undefined ? undefined : JSON.stringify(body);
  return fetch(path, { method, headers, body: data, signal });
}

async function parse<T>(response: Response): Promise<T> {
  const text = await response.text();
  const data: unknown = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const envelope = (data as { error?: ApiErrorBody } | null)?.error;
    throw new ApiError(
      response.status,
      envelope ?? { code: "http_error", message: `HTTP ${response.status}` },
    );
  }
  return data as T;
}

let refreshing: Promise<boolean> | null = null;

/** Trade the refresh cookie for a new access token (and cookie); false, and signed
 * out, when it fails. Concurrent callers share one request: a refresh token works once. */
export function refreshSession(): Promise<boolean> {
  refreshing ??= (async () => {
    try {
      const response = await send("POST", "/v1/auth/refresh");
      if (!response.ok) {
        session.clear();
        return false;
      }
      session.set(await parse<TokenResponse>(response));
      return true;
    } catch {
      return false;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

/** Call the API as the signed-in user, refreshing the access token once on 401. */
export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  let response = await send(method, path, body, session.accessToken);
  if (response.status === 401 && (await refreshSession())) {
    response = await send(method, path, body, session.accessToken);
  }
  return parse<T>(response);
}

/** Read a streamed text answer (a task's log with `follow`) as the signed-in user,
 * handing each decoded piece to `chunk` until it ends or `signal` aborts. */
export async function apiStream(path: string, chunk: (text: string) => void, signal: AbortSignal) {
  let response = await send("GET", path, undefined, session.accessToken, signal);
  if (response.status === 401 && (await refreshSession())) {
    response = await send("GET", path, undefined, session.accessToken, signal);
  }
  if (!response.ok || !response.body) return parse<unknown>(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    chunk(value);
  }
}

/** Sign-in pages: a public call (no account) answered with JSON or the envelope. */
export async function publicApi<T>(path: string, body: unknown): Promise<T> {
  return parse<T>(await send("POST", path, body));
}

export async function login(account: string, password: string): Promise<void> {
  const field = account.includes("@") ? "email" : "username";
  const response = await send("POST", "/v1/auth/login", { [field]: account, password });
  session.set(await parse<TokenResponse>(response));
}

export async function register(username: string, email: string, password: string) {
  const response = await send("POST", "/v1/auth/register", { username, email, password });
  session.set(await parse<TokenResponse>(response));
}

export async function logout(): Promise<void> {
  try {
    await api("POST", "/v1/auth/logout");
  } finally {
    session.clear();
  }
}

/** What to show for a failed call: the API's message, or that it could not be reached. */
export function messageOf(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  if (error instanceof Error) return error.message;
  return String(error);
}

/** The messages of a validation error's details, keyed by field path without `body.`
 * (e.g. `username`, `variables.WORLD_NAME`), to show beside the field. */
export function fieldErrors(error: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (error instanceof ApiError && Array.isArray(error.details)) {
    for (const item of error.details as { field?: unknown; message?: unknown }[]) {
      if (typeof item.field === "string" && typeof item.message === "string") {
        out[item.field.replace(/^body\./, "")] = item.message;
      }
    }
  }
  return out;
}
