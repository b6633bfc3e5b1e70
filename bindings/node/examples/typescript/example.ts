// A typed tour of the API; `tsc --strict` checks it against the installed package's index.d.ts.
import { type ChangeEvent, ClosedError, Decision, Engine, EntitleError, Feature, type Status, type SyncEvent } from 'entitle';

const catalog = {
  features: [
    { key: 'sso', type: 'flag', default: false },
    { key: 'projects', type: 'limit', default: 3 },
  ],
  products: [{ id: 'prod_pro', features: { sso: true, projects: 50 } }],
  customers: [
    { id: 'cus_pro', subscriptions: [{ id: 'sub_1', status: 'active', items: [{ product: 'prod_pro' }] }] },
  ],
};

export async function main(url?: string): Promise<void> {
  const engine: Engine = url ? Engine.connect(url, { pollInterval: 5, cacheDir: '/tmp/entitle' }) : Engine.fromCatalog(catalog);
  engine.on('change', (e: ChangeEvent) => console.log(`version ${e.previousVersion} -> ${e.version} at ${e.at.toISOString()}`));
  engine.on('sync', (e: SyncEvent) => console.warn(e.kind, e.message));
  try {
    const ready: boolean = await engine.waitReady(5000);
    const on: boolean = engine.enabled('cus_pro', 'sso');
    const limit: number = engine.limit('cus_pro', 'projects', { at: new Date() });
    const fits: boolean = engine.allows('cus_pro', 'projects', 49n, { requested: 1 });
    const decision: Decision = engine.check('cus_pro', 'projects', { at: 1_700_000_000 });
    const unlimited: boolean = decision.limit === Infinity;
    const all = engine.entitlements('cus_pro');
    const sso: Decision | undefined = all['sso'];
    const status: Status = engine.status;
    const projects: Feature = engine.feature('projects');
    const many: Decision[] = projects.checkMany(['cus_pro', 'nobody']);
    const flags: boolean[] = engine.feature('sso').enabledMany(['cus_pro']);
    const both: Decision[] = engine.checkFeatures('cus_pro', [projects], { at: new Date() });
    console.log(projects.limit('cus_pro'), projects.allows('cus_pro', 3), many.length, flags[0], both[0]?.reason);
    console.log(ready, on, limit, fits, decision.reason, unlimited, sso?.enabled, status.state, engine.version);
  } catch (err) {
    if (err instanceof ClosedError) throw err;
    if (err instanceof EntitleError) console.error(err.code, err.result, err.message);
  } finally {
    engine.close();
  }
}
