// The AWS SDK for JavaScript v3 as an application would use it: STS clients with no
// credentials given, so the default chain finds AWS_CONTAINER_CREDENTIALS_FULL_URI.
// Each call prints one JSON line: the caller's ARN and the access key id used.
//   node container_client.mjs once            one client, one call
//   node container_client.mjs concurrent N    N clients, each its own chain, all at once
//   node container_client.mjs until-renewed S one client, calls until it is given new keys
//                                             (fails after S seconds without)
import { GetCallerIdentityCommand, STSClient } from "@aws-sdk/client-sts";

async function call(client) {
  const credentials = await client.config.credentials();
  const answer = await client.send(new GetCallerIdentityCommand({}));
  return { arn: answer.Arn, key: credentials.accessKeyId, expiration: credentials.expiration };
}

function report(result) {
  console.log(JSON.stringify({ arn: result.arn, key: result.key }));
}

const [mode = "once", count = "1"] = process.argv.slice(2);
if (mode === "once") {
  report(await call(new STSClient({})));
} else if (mode === "concurrent") {
  const clients = Array.from({ length: Number(count) }, () => new STSClient({}));
  for (const result of await Promise.all(clients.map(call))) report(result);
} else if (mode === "until-renewed") {
  const client = new STSClient({});
  const first = await call(client);
  report(first);
  const keys = new Set([first.key]);
  const deadline = Date.now() + Number(count) * 1000;
  while (keys.size < 2) {
    if (Date.now() > deadline) throw new Error("the keys were never renewed");
    await new Promise((resolve) => setTimeout(resolve, 200));
    const result = await call(client);
    keys.add(result.key);
    report(result);
  }
} else {
  throw new Error(`unknown mode ${mode}`);
}
