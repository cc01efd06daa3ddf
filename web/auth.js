// API keys for the dashboard: a server started with --api-key wants
// `Authorization: Bearer KEY` on its /v1 routes. Open the page as
// http://host:port/#key=KEY (the fragment never leaves the browser); the
// timeline's EventSource, which cannot send headers, passes it as the
// api_key query parameter instead.

const key = new URLSearchParams(location.hash.slice(1)).get("key");

export function api(path, init = {}) {
  const headers = { ...(init.headers || {}) };
  if (key) headers.authorization = `Bearer ${key}`;
  return fetch(path, { ...init, headers });
}

export function streamUrl(path) {
  return key ? `${path}?api_key=${encodeURIComponent(key)}` : path;
}
