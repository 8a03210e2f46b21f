// The AitherOS page's own logic, without the browser or Cockpit: what agentd's typed documents
// (aither_api, docs/schema/) become on the page — memory bars, unit rows, what the viewer may
// do and why not, and errors in words a person can act on. Tested with `node --test`
// (cockpit/test/); the page (aitheros.js) only renders what these functions return.

/** The group whose members (and root) may change things, as agentd's D-Bus API decides. */
export const ADMIN_GROUP = "aither-admin";

/** Bytes in GiB with one decimal: `3.7 GiB`. */
export function gib(bytes) {
    if (typeof bytes !== "number" || !Number.isFinite(bytes) || bytes < 0)
        return "-";
    return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

/** A share as a percentage for a bar's width, clamped to 0–100. */
export function percent(part, whole) {
    if (!(whole > 0) || !(part >= 0))
        return 0;
    return Math.min(100, Math.round((part / whole) * 1000) / 10);
}

/**
 * What the viewer may do. agentd decides every call; this only says beforehand why a button
 * is disabled. `user` is `cockpit.user()`'s answer: root and members of aither-admin may.
 */
export function permission(user) {
    const groups = (user && user.groups) || [];
    if (user && (user.id === 0 || user.name === "root"))
        return { allowed: true, why: "" };
    if (groups.includes(ADMIN_GROUP))
        return { allowed: true, why: "" };
    const name = (user && user.name) || "this user";
    return {
        allowed: false,
        why: `Only root and members of ${ADMIN_GROUP} may change this; ${name} is not one (ask an admin: usermod -aG ${ADMIN_GROUP} ${name}).`,
    };
}

/**
 * The memory picture: one bar per GPU (each model's bytes on it against the preset's share of
 * its VRAM) and one for RAM (models held on the host and the L1/L2 tiers against RAM).
 * `plan`, `profile`: agentd's Plan and Profile; `preset`: the Preset reply's definition.
 */
/** SELinux as agentd finds it (`Status.selinux`): what it means, and whether to warn. */
export function isolation(mode) {
    const refused = "workflow steps that run commands or reach the network are refused unless workflows.allow_unconfined = true";
    switch (mode) {
    case "enforcing":
        return { text: "SELinux enforcing: each agent and step in its own domain and category pair", warn: false };
    case "permissive":
        return { text: `SELinux permissive: nothing is confined by it; ${refused}`, warn: true };
    case "off":
        return { text: `SELinux off: nothing is confined by it; ${refused}`, warn: true };
    case "development":
        return { text: "development mode: nothing is confined", warn: false };
    default:
        return { text: `unknown (${mode})`, warn: true };
    }
}

export function memoryBars(plan, profile, preset) {
    const fraction = (preset && preset.models && preset.models.vram_budget_fraction) || 1;
    const hostFraction = (preset && preset.models && preset.models.host_ram_fraction) || 1;
    const bars = [];
    for (const gpu of (profile && profile.gpus) || []) {
        const total = gpu.vram_bytes || 0;
        const budget = Math.floor(total * fraction);
        const parts = [];
        for (const m of plan.models || []) {
            const i = (m.gpus || []).indexOf(gpu.pci_address);
            if (i >= 0)
                parts.push({ label: m.name, bytes: (m.bytes_per_gpu || [])[i] || 0 });
        }
        bars.push(bar(`${gpu.name} (${gpu.pci_address})`, "VRAM", total, budget, parts));
    }
    const ram = (profile && profile.memory && profile.memory.total_bytes) || 0;
    const parts = (plan.models || [])
            .filter(m => (m.host_bytes || 0) > 0)
            .map(m => ({ label: m.name, bytes: m.host_bytes }));
    const tiers = plan.memory_tiers || {};
    parts.push({ label: "L1 hot cache", bytes: tiers.l1_hot_cache_bytes || 0, tier: true });
    parts.push({ label: "L2 vector index", bytes: tiers.l2_vector_index_bytes || 0, tier: true });
    bars.push(bar("Memory", "RAM", ram, Math.floor(ram * hostFraction), parts));
    return bars;
}

function bar(label, kind, total, budget, parts) {
    const used = parts.reduce((sum, p) => sum + p.bytes, 0);
    return {
        label,
        kind,
        total,
        budget,
        used,
        over: used > budget,
        parts: parts.map(p => ({ ...p, width: percent(p.bytes, total), text: `${p.label}: ${gib(p.bytes)}` })),
        budgetAt: percent(budget, total),
        summary: `${gib(used)} of ${gib(budget)} planned (${gib(total)} ${kind})`,
    };
}

/** The disk tiers (L3 store, L4 archive) as rows. */
export function diskTiers(plan) {
    const t = plan.memory_tiers || {};
    return [
        { tier: "L0", what: "KV cache on the GPUs", bytes: t.l0_kv_cache_bytes || 0 },
        { tier: "L1", what: "hot cache in RAM", bytes: t.l1_hot_cache_bytes || 0 },
        { tier: "L2", what: "vector index in RAM", bytes: t.l2_vector_index_bytes || 0 },
        { tier: "L3", what: "store on disk", bytes: t.l3_store_bytes || 0 },
        { tier: "L4", what: "archive on disk", bytes: t.l4_archive_bytes || 0 },
    ].map(r => ({ ...r, size: gib(r.bytes) }));
}

/** States in which a unit can be started, stopped or restarted. */
const UP = ["starting", "running", "backoff"];

/** A unit's row: what it shows and which actions apply (before permission). */
export function unitRow(unit, queued) {
    const state = unit.state;
    const position = (queued || []).indexOf(unit.name);
    const detail = [unit.detail, unit.status].filter(Boolean).join(" · ");
    return {
        name: unit.name,
        kind: unit.kind,
        group: `${unit.group} (${unit.priority})`,
        state,
        restarts: unit.restarts,
        detail: position >= 0 ? `queued, ${position + 1} of ${queued.length}` + (detail ? ` · ${detail}` : "") : detail,
        actions: {
            start: !UP.includes(state) && state !== "stopping",
            stop: UP.includes(state) || state === "queued",
            restart: UP.includes(state) || ["failed", "gave-up", "exited"].includes(state),
        },
    };
}

/** A model's row: present, missing or verified, and its worker's state. */
export function modelRow(model) {
    let file = "missing";
    if (model.present)
        file = model.verification ? `present, ${model.verification}` : "present";
    return {
        name: model.name,
        role: model.role,
        quant: model.quant,
        file,
        size: model.bytes ? gib(model.bytes) : "-",
        worker: model.state || "-",
        path: model.path,
    };
}

/**
 * The rows of the eval table from `EvalResults`: one per model and suite, the pass rate and its
 * interval in per cent, the share of steps that left their outputs, and when (UTC).
 */
export function evalRows(doc) {
    const rows = [];
    for (const r of (doc && doc.reports) || []) {
        const when = new Date(r.started * 1000).toISOString().slice(0, 16).replace("T", " ") + "Z" +
            (r.quick ? " (quick)" : "");
        for (const s of r.suites) {
            rows.push({
                model: r.model,
                suite: s.suite,
                rate: `${Math.round(100 * s.pass_rate)} %`,
                interval: `${Math.round(100 * s.low)}–${Math.round(100 * s.high)} %`,
                runs: String(s.runs),
                outputs: s.steps ? `${Math.round(100 * s.steps_with_outputs / s.steps)} %` : "-",
                when,
            });
        }
    }
    return rows;
}

/**
 * A pull's progress from its `PullChanged` signal: the text and the share for a progress bar
 * (`null` when the size is not known).
 */
export function pullProgress(done, total, state, message) {
    if (state === "done")
        return { text: "pulled", value: null, finished: true };
    if (state === "failed")
        return { text: `pull failed: ${message}`, value: null, finished: true };
    if (!(total > 0))
        return { text: `pulling: ${gib(done)}`, value: null, finished: false };
    return { text: `pulling: ${gib(done)} of ${gib(total)}`, value: percent(done, total), finished: false };
}

/** A run's row for the workflows table. */
export function runRow(run) {
    const done = (run.steps || []).filter(s => s.ended).length;
    const pending = (run.approvals || []).filter(a => a.state === "pending").length;
    return {
        id: run.id,
        workflow: run.workflow,
        state: run.state,
        steps: `${done}/${(run.steps || []).length}`,
        pending,
        trigger: run.trigger,
        reason: run.reason || "",
    };
}

/**
 * An error from a D-Bus call (cockpit.dbus rejects with `{name, message}`, or a problem
 * string when the channel fails) in words a person can act on.
 */
export function explain(error, action) {
    const name = (error && (error.name || error.problem)) || "";
    const message = (error && error.message) || String(error || "");
    const what = action ? `${action}: ` : "";
    if (/ServiceUnknown|NameHasNoOwner|not-found/.test(name) || /was not provided by any \.service/.test(message))
        return `${what}agentd is not running. Start it with: systemctl start agentd (its log: journalctl -u agentd).`;
    if (/AccessDenied|access-denied|not-authorized/.test(name) || /not allowed|only root and/i.test(message))
        return `${what}refused: ${message || "not allowed"}. Only root and members of ${ADMIN_GROUP} may do this.`;
    if (/disconnected|terminated/.test(name))
        return `${what}the connection to the machine was lost; reload the page.`;
    if (message)
        return `${what}${message}`;
    return `${what}it failed (${name || "unknown error"}).`;
}

/** What to do when this account may not read the system journal. */
export const JOURNAL_HINT = "this account may not read the system journal: add it to the systemd-journal group " +
    "(usermod -aG systemd-journal NAME; wheel and adm can read it on Rocky), or read them with aitherctl logs as root.";

/** Whether journalctl's output says the account sees only its own messages. */
export function journalHidden(text) {
    return /not seeing messages from other users and the system|No journal files were opened due to insufficient permissions/.test(text || "");
}

/** Parse a document agentd returned as a JSON string, checking its schema version. */
export function parseDocument(text, what) {
    let doc;
    try {
        doc = JSON.parse(text);
    } catch (e) {
        throw new Error(`agentd's ${what} is not JSON: ${e.message}`);
    }
    if (doc && doc.schema_version !== undefined && doc.schema_version !== 1)
        throw new Error(`agentd's ${what} has schema version ${doc.schema_version}; this page reads version 1 (update aitheros-cockpit)`);
    return doc;
}

/** The size of a chart's drawing (its SVG viewBox). */
export const CHART = { width: 600, height: 120 };

/** The smallest of 1, 2, 5 × 10ⁿ at or above `v`: a chart's top (at least 1). */
export function niceMax(v) {
    if (!(v > 1))
        return 1;
    const step = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 5, 10])
        if (m * step >= v)
            return m * step;
    return 10 * step;
}

/**
 * One series as SVG path data: `value(sample)` against time, the window's `seconds` ending at
 * `now` across the chart, 0 to `top` up it. The line breaks where the worker was not sampled
 * (a gap over 1.5 intervals) and where the value is unknown (a rate's first sample).
 */
export function seriesPath(samples, value, top, now, seconds, interval, size = CHART) {
    const parts = [];
    let prev = null;
    for (const s of samples || []) {
        const v = value(s);
        const age = now - s.time;
        if (v === null || v === undefined || !Number.isFinite(v) || age > seconds || age < 0) {
            prev = null;
            continue;
        }
        const x = (size.width * (1 - age / seconds)).toFixed(1);
        const y = (size.height * (1 - Math.min(v, top) / top)).toFixed(1);
        const joined = prev !== null && s.time - prev <= 1.5 * interval;
        // A lone point is a zero-length line: round caps draw it as a dot.
        parts.push(joined ? `L${x} ${y}` : `M${x} ${y} L${x} ${y}`);
        prev = s.time;
    }
    return parts.join(" ");
}

function figure(v, digits = 1) {
    return v === null || v === undefined ? "-" : Number(v).toFixed(digits);
}

/**
 * A worker's three charts from its `Inference` samples (agentd's document: `now`, the window
 * and the interval): tokens per second (generated and prompt), the queue and busy slots, and
 * the KV cache in use — each with its top, its series' path data and the latest figures in
 * words.
 */
export function inferenceCharts(worker, doc) {
    const samples = worker.samples || [];
    const last = samples[samples.length - 1] || {};
    const peak = key => samples.reduce((m, s) => Math.max(m, s[key] || 0), 0);
    const path = (value, top) => seriesPath(samples, value, top, doc.now, doc.window_seconds, doc.interval_seconds);
    const kv = s => (s.kv_cells_total > 0 ? (100 * s.kv_cells_used) / s.kv_cells_total : null);
    const tokensTop = niceMax(Math.max(peak("generated_per_second"), peak("prompt_per_second")));
    const slotsTop = niceMax(Math.max(peak("queue"), peak("slots_busy"), peak("slots_total")));
    return [
        {
            title: "Tokens per second",
            top: tokensTop,
            unit: "tokens/s",
            peak: peak("generated_per_second"),
            series: [
                { name: "generated", d: path(s => s.generated_per_second, tokensTop) },
                { name: "prompt", d: path(s => s.prompt_per_second, tokensTop) },
            ],
            latest: `${figure(last.generated_per_second)} generated, ${figure(last.prompt_per_second)} prompt tokens/s`,
        },
        {
            title: "Queue and busy slots",
            top: slotsTop,
            unit: "requests",
            peak: peak("queue"),
            series: [
                { name: "queue", d: path(s => s.queue, slotsTop) },
                { name: "busy", d: path(s => s.slots_busy, slotsTop) },
            ],
            latest: `${last.queue ?? "-"} waiting, ${last.slots_busy ?? "-"} of ${last.slots_total ?? "-"} slots busy`,
        },
        {
            title: "KV cache in use",
            top: 100,
            unit: "%",
            peak: samples.reduce((m, s) => Math.max(m, kv(s) || 0), 0),
            series: [{ name: "kv", d: path(kv, 100) }],
            latest: `${last.kv_cells_used ?? "-"} of ${last.kv_cells_total ?? "-"} cells (${figure(kv(last), 0)} %)`,
        },
    ];
}

/** A run's steps as rows: state, work done, what it said, and the outputs it kept. */
export function stepRows(run) {
    return (run.steps || []).map(s => {
        const r = s.result;
        const tokens = r ? r.prompt_tokens + r.completion_tokens : null;
        return {
            name: s.name,
            state: s.state,
            work: r ? `${r.turns} turns, ${tokens} tokens, ${r.seconds.toFixed(1)} s` : "-",
            said: (r && r.summary) || s.error || "",
            outputs: (r && r.outputs) || [],
        };
    });
}

/** Whether `Remove` applies to a model: its file is there and it is not being pulled. */
export function removable(model, pulling) {
    return Boolean(model.present) && !pulling;
}
