// The wallet's service worker: after the first visit the page opens with no network at all (a gate's
// queue is where phones lose signal). It keeps the page's own files and nothing else; answers from
// /v1/ (the claim) always go to the network and are never stored.
//
// Cache first: the stored copy answers at once, even offline. When the network is there, a fresh copy
// is fetched beside it for the next visit, so a new wallet reaches phones without a version bump here.

const CACHE = "passgate-wallet-v1";
const FILES = [
  "/wallet",
  "/wallet/wallet.js",
  "/wallet/qr.js",
  "/wallet/manifest.webmanifest",
  "/wallet/icon.svg",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(FILES)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) if (name !== CACHE) await caches.delete(name);
    await self.clients.claim(); // the page that registered us works offline from now on, not after a reload
  })());
});

/** The cached file a request stands for, or null: the page is one file, whatever its query or
 * fragment (a claim link is /wallet#claim=...; the fragment never reaches here anyway). */
function cachedPath(request) {
  if (request.method !== "GET") return null;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin || url.pathname.startsWith("/v1/")) return null;
  const path = url.pathname === "/wallet/" || url.pathname === "/wallet/index.html" ? "/wallet" : url.pathname;
  return FILES.includes(path) ? path : null;
}

self.addEventListener("fetch", (event) => {
  const path = cachedPath(event.request);
  if (path === null) return; // the browser's own handling: the network, never this cache
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    const refresh = fetch(path, { cache: "no-cache" }).then((response) => {
      if (response.ok) return cache.put(path, response.clone()).then(() => response);
      return response;
    });
    const stored = await cache.match(path);
    if (stored) {
      event.waitUntil(refresh.catch(() => undefined)); // offline: the stored copy stays
      return stored;
    }
    return refresh;
  })());
});
