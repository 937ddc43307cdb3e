// Calls to this server's HTTP API. Every failure becomes an ApiError holding the
// server's error payload (code and message), so the page shows errors in one schema.

export class ApiError extends Error {
  constructor(code, message, status = null) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

async function call(url, options = {}) {
  let response;
  try {
    response = await fetch(url, { cache: "no-store", ...options });
  } catch (error) {
    throw new ApiError("NETWORK_ERROR", `the server did not answer (${error.message})`);
  }
  const body = await response.json().catch(() => null);
  if (response.ok) {
    return body;
  }
  if (body?.type === "error") {
    throw new ApiError(body.code, body.message, response.status);
  }
  throw new ApiError(`HTTP_${response.status}`, response.statusText || "unexpected answer", response.status);
}

// {user_id, token, expires_at}; the endpoint exists only when the server runs with AUTH_MODE=dev.
export async function fetchDevToken(userId) {
  try {
    return await call(`/api/v1/dev/token?user_id=${encodeURIComponent(userId)}`);
  } catch (error) {
    if (error.status === 404) {
      throw new ApiError(error.code, "this server is not in dev mode (AUTH_MODE=dev): paste a JWT instead", 404);
    }
    throw error;
  }
}

// The backend path: the server checks the user is connected somewhere (or offline within a
// session's recovery window) and publishes to the replicas that hold them.
// {status: "sent" | "stored", user_id, event}.
export function emitToUser(token, userId, event, data) {
  return call("/api/v1/emit", {
    method: "POST",
    headers: { "Authorization": `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify({ user_id: userId, event, data }),
  });
}
