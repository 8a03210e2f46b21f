// The page's logic on agentd's documents (node --test; no browser, no Cockpit).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import {
    CHART, diskTiers, evalRows, explain, gib, inferenceCharts, isolation, journalHidden, memoryBars, modelRow, niceMax, parseDocument, percent,
    permission, pullProgress, removable, runRow, seriesPath, stepRows, unitRow,
} from "../view.js";

const GiB = 2 ** 30;

test("sizes and shares read as people read them", () => {
    assert.equal(gib(3.7 * GiB), "3.7 GiB");
    assert.equal(gib(undefined), "-");
    assert.equal(percent(1, 4), 25);
    assert.equal(percent(5, 4), 100, "clamped");
    assert.equal(percent(1, 0), 0, "no whole, no bar");
});

test("SELinux not enforcing is a warning that says what is refused", () => {
    assert.equal(isolation("enforcing").warn, false);
    const p = isolation("permissive");
    assert.equal(p.warn, true);
    assert.match(p.text, /permissive: nothing is confined by it; workflow steps that run commands/);
    assert.equal(isolation("off").warn, true);
    assert.equal(isolation("development").warn, false);
    assert.equal(isolation(undefined).warn, true);
});

test("root and aither-admin may act; anyone else is told why not and what to do", () => {
    assert.deepEqual(permission({ name: "root", id: 0, groups: [] }), { allowed: true, why: "" });
    assert.equal(permission({ name: "ops", id: 1001, groups: ["ops", "aither-admin"] }).allowed, true);
    const viewer = permission({ name: "viewer", id: 1002, groups: ["viewer"] });
    assert.equal(viewer.allowed, false);
    assert.match(viewer.why, /Only root and members of aither-admin/);
    assert.match(viewer.why, /usermod -aG aither-admin viewer/);
});

test("the memory bars put each model on its GPU against the preset's share, and RAM with the tiers", () => {
    const plan = {
        models: [
            { name: "qwen", gpus: ["0000:01:00.0"], bytes_per_gpu: [18 * GiB], host_bytes: 0 },
            { name: "minilm", gpus: [], bytes_per_gpu: [], host_bytes: 1 * GiB },
        ],
        memory_tiers: { l0_kv_cache_bytes: 2 * GiB, l1_hot_cache_bytes: 2 * GiB, l2_vector_index_bytes: 3 * GiB, l3_store_bytes: 0, l4_archive_bytes: 0 },
    };
    const profile = { gpus: [{ name: "RTX 4090", pci_address: "0000:01:00.0", vram_bytes: 24 * GiB }], memory: { total_bytes: 32 * GiB } };
    const preset = { models: { vram_budget_fraction: 0.92, host_ram_fraction: 0.5 } };
    const [gpu, ram] = memoryBars(plan, profile, preset);
    assert.equal(gpu.label, "RTX 4090 (0000:01:00.0)");
    assert.deepEqual(gpu.parts.map(p => [p.label, p.width]), [["qwen", 75]]);
    assert.equal(gpu.budgetAt, 92);
    assert.equal(gpu.over, false);
    assert.equal(gpu.summary, "18.0 GiB of 22.1 GiB planned (24.0 GiB VRAM)");
    assert.deepEqual(ram.parts.map(p => p.label), ["minilm", "L1 hot cache", "L2 vector index"]);
    assert.equal(ram.used, 6 * GiB);
    assert.equal(ram.budget, 16 * GiB);
    const tight = memoryBars({ ...plan, models: [{ ...plan.models[0], bytes_per_gpu: [23 * GiB] }] }, profile, preset)[0];
    assert.equal(tight.over, true, "a plan past the budget shows it");
    assert.deepEqual(diskTiers(plan).map(t => `${t.tier} ${t.size}`), ["L0 2.0 GiB", "L1 2.0 GiB", "L2 3.0 GiB", "L3 0.0 GiB", "L4 0.0 GiB"]);
});

test("a unit's row says where it waits and which actions apply to its state", () => {
    const agent = { name: "vm-b", kind: "agent", group: "agents", priority: 30, state: "queued", restarts: 0, detail: null, status: null };
    const row = unitRow(agent, ["vm-a", "vm-b"]);
    assert.equal(row.detail, "queued, 2 of 2");
    assert.deepEqual(row.actions, { start: true, stop: true, restart: false });
    const running = unitRow({ ...agent, state: "running", restarts: 2, status: "serving" }, []);
    assert.deepEqual([running.detail, running.restarts, running.group], ["serving", 2, "agents (30)"]);
    assert.deepEqual(running.actions, { start: false, stop: true, restart: true });
    assert.deepEqual(unitRow({ ...agent, state: "failed", detail: "exited with status 3" }, []).actions, { start: true, stop: false, restart: true });
});

test("models read as present, missing or verified; runs as steps done and proposals waiting", () => {
    assert.equal(modelRow({ name: "m", role: "chat", quant: "Q4_K_M", present: false, path: "/x" }).file, "missing");
    assert.equal(modelRow({ name: "m", present: true, verification: "verified", bytes: 4 * GiB }).file, "present, verified");
    const run = runRow({ id: "devops-1", workflow: "devops", state: "awaiting_approval", trigger: "unit x failed",
        steps: [{ ended: 1 }, { ended: 2 }, { ended: null }], approvals: [{ state: "pending" }, { state: "done" }] });
    assert.deepEqual([run.steps, run.pending], ["2/3", 1]);
});

test("errors say what to do", () => {
    assert.match(explain({ name: "org.freedesktop.DBus.Error.ServiceUnknown", message: "The name org.aitheros.Agentd1 was not provided by any .service files" }, "Status"),
        /agentd is not running\. Start it with: systemctl start agentd/);
    assert.match(explain({ name: "org.freedesktop.DBus.Error.AccessDenied", message: "restart vm-a: only root and members of aither-admin may" }, "Restart vm-a"),
        /^Restart vm-a: refused: .*Only root and members of aither-admin may do this\./);
    assert.match(explain({ problem: "disconnected" }), /connection to the machine was lost/);
    assert.equal(explain({ name: "org.freedesktop.DBus.Error.Failed", message: "no unit \"x\"" }, "Start x"), "Start x: no unit \"x\"");
});

test("documents are parsed with their schema version checked", () => {
    assert.deepEqual(parseDocument('{"schema_version":1,"units":[]}', "unit list"), { schema_version: 1, units: [] });
    assert.throws(() => parseDocument("nope", "status"), /agentd's status is not JSON/);
    assert.throws(() => parseDocument('{"schema_version":2}', "status"), /schema version 2; this page reads version 1/);
});

test("the manifest names the page and keeps Cockpit's content security policy", () => {
    const manifest = JSON.parse(readFileSync(new URL("../manifest.json", import.meta.url)));
    assert.equal(manifest.menu.index.label, "AitherOS");
    assert.equal(manifest["content-security-policy"], undefined, "no loosening of Cockpit's default policy");
});

test("a journal this account may not read is recognised", () => {
    assert.equal(journalHidden("Hint: You are currently not seeing messages from other users and the system.\n"), true);
    assert.equal(journalHidden("2026-12-02T10:00:00+0000 vm-a[1]: hello\n"), false);
});

test("a pull's progress reads as bytes of the whole, then its end", () => {
    assert.deepEqual(pullProgress(1 * GiB, 4 * GiB, "pulling", ""), { text: "pulling: 1.0 GiB of 4.0 GiB", value: 25, finished: false });
    assert.equal(pullProgress(5, 0, "pulling", "").value, null, "size unknown");
    assert.deepEqual(pullProgress(0, 0, "failed", "connection refused"), { text: "pull failed: connection refused", value: null, finished: true });
    assert.equal(pullProgress(0, 0, "done", "").finished, true);
});

test("a chart's top is a round number at or above its peak", () => {
    assert.deepEqual([0, 0.4, 1, 1.2, 3, 7, 10, 11, 240, 999].map(niceMax), [1, 1, 1, 2, 5, 10, 10, 20, 500, 1000]);
});

test("a series runs across the window, breaking where the worker was not sampled or the value is unknown", () => {
    const at = (time, v) => ({ time, v });
    const samples = [at(0, 1), at(400, null), at(405, 5), at(410, 10), at(500, 2), at(600, 10)];
    // A 600 s window ending at 600, 5 s apart: 0 is the left edge, 600 the right.
    const d = seriesPath(samples, s => s.v, 10, 600, 600, 5);
    assert.equal(d, "M0.0 108.0 L0.0 108.0 M405.0 60.0 L405.0 60.0 L410.0 0.0 M500.0 96.0 L500.0 96.0 M600.0 0.0 L600.0 0.0");
    // Older than the window, or from the future: left out; above the top: at the top.
    assert.equal(seriesPath([at(-1, 1), at(601, 1), at(300, 50)], s => s.v, 10, 600, 600, 5), "M300.0 0.0 L300.0 0.0");
    assert.equal(CHART.width, 600);
});

test("a worker's charts: tokens per second, the queue and slots, the KV cache, with the latest figures in words", () => {
    const sample = (time, generated, queue) => ({
        time, generated_per_second: generated, prompt_per_second: generated === null ? null : generated * 2,
        queue, slots_busy: 1, slots_total: 4, kv_cells_used: 1024, kv_cells_total: 4096,
    });
    const doc = { now: 100, interval_seconds: 5, window_seconds: 600 };
    const [tokens, queue, kv] = inferenceCharts({ model: "qwen", unit: "infer-qwen", samples: [sample(90, null, 0), sample(95, 12.5, 3), sample(100, 3, 1)] }, doc);
    assert.deepEqual([tokens.title, tokens.top, tokens.peak], ["Tokens per second", 50, 12.5], "prompt peaks at 25: the top is 50");
    assert.equal(tokens.latest, "3.0 generated, 6.0 prompt tokens/s");
    assert.deepEqual(tokens.series.map(s => s.name), ["generated", "prompt"]);
    assert.match(tokens.series[0].d, /^M595\.0 90\.0 L595\.0 90\.0 L600\.0 112\.8$/);
    assert.deepEqual([queue.top, queue.peak, queue.latest], [5, 3, "1 waiting, 1 of 4 slots busy"]);
    assert.deepEqual([kv.top, kv.peak, kv.latest], [100, 25, "1024 of 4096 cells (25 %)"]);
    const empty = inferenceCharts({ samples: [] }, doc);
    assert.equal(empty[0].latest, "- generated, - prompt tokens/s");
    assert.equal(empty[0].series[0].d, "");
});

test("a run's steps read as their work, what they said and the outputs they kept", () => {
    const run = { steps: [
        { name: "detect", state: "done", result: { turns: 3, prompt_tokens: 900, completion_tokens: 100, seconds: 4.31, summary: "vm-flaky failed", outputs: ["diagnosis.json"] } },
        { name: "fix", state: "failed", result: null, error: "the model did not answer" },
        { name: "report", state: "pending", result: null },
    ] };
    assert.deepEqual(stepRows(run), [
        { name: "detect", state: "done", work: "3 turns, 1000 tokens, 4.3 s", said: "vm-flaky failed", outputs: ["diagnosis.json"] },
        { name: "fix", state: "failed", work: "-", said: "the model did not answer", outputs: [] },
        { name: "report", state: "pending", work: "-", said: "", outputs: [] },
    ]);
});

test("only a file that is there, and not being pulled, can be removed", () => {
    assert.equal(removable({ present: true }, false), true);
    assert.equal(removable({ present: true }, true), false);
    assert.equal(removable({ present: false }, false), false);
});

test("eval rows give each model's suites in per cent, with their interval and when", () => {
    const doc = { schema_version: 1, reports: [{ model: "smollm2-135m-instruct", started: 1796659200, quick: true, suites: [
        { suite: "devops", pass_rate: 0.625, low: 0.406, high: 0.804, runs: 24, steps: 72, steps_with_outputs: 70 },
        { suite: "tools", pass_rate: 0.3, low: 0.2, high: 0.4, runs: 60, steps: 0, steps_with_outputs: 0 },
    ] }] };
    const rows = evalRows(doc);
    assert.equal(rows.length, 2);
    assert.deepEqual(rows[0], { model: "smollm2-135m-instruct", suite: "devops", rate: "63 %", interval: "41–80 %",
        runs: "24", outputs: "97 %", when: "2026-12-07 16:00Z (quick)" });
    assert.equal(rows[1].outputs, "-");
    assert.deepEqual(evalRows(null), []);
});
