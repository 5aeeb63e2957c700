// Swagger UI, as an admin uses it, in a real headless Chromium: "Try it
// out" → Execute on an operation must send that operation's request.
// (Repeated operationIds once made GET /v1/contacts send GET /v1/api-keys,
// and POST /v1/contacts create an API key.)
//
// Usage: node tests/browser/swagger-ui.cjs <base URL> <API key>
// with PLAYWRIGHT_CORE naming the playwright-core module to load.
const { chromium } = require(process.env.PLAYWRIGHT_CORE || "playwright-core");

const [base, key] = process.argv.slice(2);
if (!base || !key) {
  console.error("usage: swagger-ui.cjs <base URL> <API key>");
  process.exit(2);
}

async function apiKeys() {
  const r = await fetch(`${base}/v1/api-keys`, { headers: { Authorization: `Bearer ${key}` } });
  return (await r.json()).items.length;
}

// Expands the operation, presses "Try it out", optionally fills the body,
// presses Execute, and returns the API request it sent and its status.
async function tryItOut(page, tag, operationId, body) {
  const block = page.locator(`#operations-${tag}-${operationId}`);
  await block.locator(".opblock-summary").first().click();
  await block.locator(".try-out__btn").click();
  if (body !== undefined) {
    await block.locator("textarea.body-param__text").fill(body);
  }
  const sent = page.waitForRequest((r) => new URL(r.url()).pathname.startsWith("/v1/"));
  await block.locator("button.execute").click();
  const request = await sent;
  const response = await request.response();
  return {
    method: request.method(),
    path: new URL(request.url()).pathname,
    status: response ? response.status() : 0,
  };
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox"],
  });
  const failures = [];
  try {
    const page = await browser.newPage();
    // The key an admin would enter under "Authorize".
    await page.setExtraHTTPHeaders({ Authorization: `Bearer ${key}` });
    await page.goto(`${base}/swagger-ui/`);
    await page.locator("#operations-contacts-listContacts").waitFor();
    const keysBefore = await apiKeys();
    const cases = [
      ["contacts", "listContacts", undefined, "GET", "/v1/contacts", 200],
      ["contacts", "createContact", '{"name": "Sam"}', "POST", "/v1/contacts", 201],
      ["segments", "listSegments", undefined, "GET", "/v1/segments", 200],
      ["tags", "listTags", undefined, "GET", "/v1/tags", 200],
      ["api-keys", "listApiKeys", undefined, "GET", "/v1/api-keys", 200],
    ];
    for (const [tag, id, body, method, path, status] of cases) {
      const sent = await tryItOut(page, tag, id, body);
      const want = `${method} ${path} → ${status}`;
      const got = `${sent.method} ${sent.path} → ${sent.status}`;
      console.log(`${id}: ${got}`);
      if (got !== want) failures.push(`${id}: expected ${want}, sent ${got}`);
    }
    const keysAfter = await apiKeys();
    if (keysAfter !== keysBefore) {
      failures.push(`API keys went from ${keysBefore} to ${keysAfter}: an operation created one`);
    }
  } finally {
    await browser.close();
  }
  if (failures.length) {
    console.error(failures.join("\n"));
    process.exit(1);
  }
  console.log("Swagger UI runs the operation it shows");
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
