// fhir-kit-client, unmodified, against a running SamPlan (tests/e2e/test_clients.py).
//
//   node fhir_kit_client.mjs PACKAGE_DIR crud  FHIR_BASE PERSONNUMMER
//   node fhir_kit_client.mjs PACKAGE_DIR smart FHIR_BASE
//
// PACKAGE_DIR is the npm prefix the test installed fhir-kit-client into (kept out
// of git, under var/test-tools). Prints one JSON object on stdout; any failure
// is a non-zero exit with the error on stderr.
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';

const [packageDir, mode, baseUrl, pnr] = process.argv.slice(2);
const entry = join(packageDir, 'node_modules', 'fhir-kit-client', 'dist', 'index.js');
const { Client } = await import(pathToFileURL(entry).href);
const client = new Client({ baseUrl });
const PNR = 'http://electronichealth.se/identifier/personnummer';

async function crud() {
  const capability = await client.capabilityStatement();
  const patient = await client.create({
    resourceType: 'Patient',
    body: { resourceType: 'Patient', identifier: [{ system: PNR, value: pnr }],
            name: [{ family: 'Kit', given: ['Fhir'] }] },
  });
  const plan = await client.create({
    resourceType: 'CarePlan',
    body: { resourceType: 'CarePlan', status: 'active', intent: 'plan', title: 'Överenskommelse',
            subject: { reference: `Patient/${patient.id}` } },
  });
  const read = await client.read({ resourceType: 'Patient', id: patient.id });
  const byIdentifier = await client.search({
    resourceType: 'Patient', searchParams: { identifier: `${PNR}|${pnr}` },
  });
  const plans = await client.search({
    resourceType: 'CarePlan', searchParams: { patient: patient.id, status: 'active' },
  });
  plan.status = 'completed';
  const updated = await client.update({ resourceType: 'CarePlan', id: plan.id, body: plan });
  const transaction = await client.transaction({
    body: { resourceType: 'Bundle', type: 'transaction', entry: [{
      fullUrl: 'urn:uuid:5a3f0c1e-7d0b-4f43-9a51-0d3c2a7e6b10',
      resource: { resourceType: 'Goal', lifecycleStatus: 'active',
                  description: { text: 'Gå till affären själv' },
                  subject: { reference: `Patient/${patient.id}` } },
      request: { method: 'POST', url: 'Goal' },
    }] },
  });
  return {
    fhirVersion: capability.fhirVersion,
    patient: patient.id,
    read: read.id,
    found: (byIdentifier.entry ?? []).map((e) => e.resource.id),
    plans: (plans.entry ?? []).map((e) => e.resource.id),
    updated: [updated.status, updated.meta.versionId],
    transaction: transaction.entry.map((e) => e.response.status),
  };
}

async function smart() {
  const found = await client.smartAuthMetadata();
  return Object.fromEntries(Object.entries(found).map(([k, v]) => [k, v ? String(v) : v]));
}

try {
  const result = mode === 'smart' ? await smart() : await crud();
  process.stdout.write(JSON.stringify(result) + '\n');
} catch (error) {
  process.stderr.write(`${error?.stack ?? error}\n${JSON.stringify(error?.response?.data ?? '')}\n`);
  process.exit(1);
}
