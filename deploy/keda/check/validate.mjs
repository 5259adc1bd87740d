// Validates KEDA documents (a JSON array on stdin) against KEDA's CRD schemas, as published in
// @kubernetes-models/keda. Prints one line per document; exits 1 if any is invalid.
import { readFileSync } from "node:fs";
import { ScaledJob, ScaledObject, TriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1";

const kinds = { ScaledJob, ScaledObject, TriggerAuthentication };
const documents = JSON.parse(readFileSync(0, "utf8"));
let invalid = 0;
for (const document of documents) {
  const name = `${document.kind}/${document.metadata?.name}`;
  const Kind = kinds[document.kind];
  try {
    if (!Kind) throw new Error(`not a KEDA kind: ${document.kind}`);
    new Kind(document).validate();
    console.log(`valid ${name}`);
  } catch (error) {
    invalid += 1;
    console.log(`invalid ${name}: ${error.message}`);
  }
}
process.exit(invalid ? 1 : 0);
