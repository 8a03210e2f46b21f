// The AitherOS page: agentd's D-Bus API (org.aitheros.Agentd1 on the system bus, through
// cockpit.dbus) rendered as views. Every change is a D-Bus call made as the logged-in user:
// agentd decides (root and aither-admin may), the page only says beforehand why a button is
// off. No superuser channel: the page asks for nothing the API does not give that user.
/* global cockpit */

import * as view from "./view.js";

const PATH = "/org/aitheros/Agentd1";
const IFACE = "org.aitheros.Agentd1";
const client = cockpit.dbus("org.aitheros.Agentd1", { bus: "system" });

const $ = id => document.getElementById(id);
let may = { allowed: false, why: "Checking who you are…" };
let state = { status: null, plan: null, profile: null, preset: null, models: null, runs: null, approvals: null, workflows: null, evals: null };

/** Call a method whose reply is a JSON document; `what` names it in errors. */
async function fetchDoc(method, args, what) {
    const [text] = await client.call(PATH, IFACE, method, args || []);
    return view.parseDocument(text, what);
}

function problem(text) {
    $("problem").hidden = !text;
    $("problem").textContent = text || "";
}

function notice(text) {
    $("notice").hidden = !text;
    $("notice").textContent = text || "";
}

function cell(row, text, className) {
    const td = row.insertCell();
    td.textContent = text === undefined || text === null ? "" : String(text);
    if (className)
        td.className = className;
    return td;
}

function actionButton(td, label, enabled, run) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "action";
    b.textContent = label;
    b.disabled = !enabled || !may.allowed;
    if (!may.allowed)
        b.title = may.why;
    // The row's buttons wait for the reply: a second click is never a second decision.
    b.addEventListener("click", async () => {
        const row = td.closest("tr") || td;
        const buttons = [...row.querySelectorAll("button")];
        const before = buttons.map(x => x.disabled);
        buttons.forEach(x => { x.disabled = true });
        try {
            await run();
        } finally {
            buttons.forEach((x, i) => { x.disabled = before[i] });
        }
    });
    td.appendChild(b);
    return b;
}

/** A change: the call, then what agentd said, or why not in words. */
async function change(label, method, args) {
    notice("");
    try {
        const reply = await fetchDoc(method, args, `reply to ${method}`);
        notice(reply.message || `${label}: done`);
        problem("");
    } catch (e) {
        problem(view.explain(e, label));
    }
    await refresh();
}

function renderMachine() {
    const s = state.status;
    const dl = $("preset");
    dl.replaceChildren();
    const add = (term, text, warn = false) => {
        const dt = document.createElement("dt");
        dt.textContent = term;
        const dd = document.createElement("dd");
        dd.textContent = text;
        if (warn)
            dd.className = "warn";
        dl.append(dt, dd);
    };
    add("Preset", `${s.preset}${state.preset && state.preset.pinned ? " (pinned)" : " (chosen from the hardware)"}`);
    add("Why", s.reason);
    if (state.profile) {
        const p = state.profile;
        add("CPU", `${p.cpu.model} (${p.cpu.physical_cores} cores, ${p.cpu.logical_cores} threads)`);
        add("Memory", view.gib(p.memory.total_bytes));
        add("GPUs", p.gpus.length ? p.gpus.map(g => `${g.name}, ${view.gib(g.vram_bytes)}`).join("; ") : "none");
    }
    add("Agents at once", String(s.agent_slots));
    add("Cgroups", s.cgroups);
    const isolation = view.isolation(s.selinux);
    add("Isolation", isolation.text, isolation.warn);
    const bars = $("bars");
    bars.replaceChildren();
    if (state.plan && state.profile) {
        for (const b of view.memoryBars(state.plan, state.profile, state.preset && state.preset.preset)) {
            const div = document.createElement("div");
            div.className = b.over ? "bar over" : "bar";
            const label = document.createElement("div");
            label.className = "label";
            const name = document.createElement("span");
            name.textContent = b.label;
            const summary = document.createElement("span");
            summary.className = "summary";
            summary.textContent = b.summary + (b.over ? " — over the budget" : "");
            label.append(name, summary);
            const track = document.createElement("div");
            track.className = "track";
            track.setAttribute("role", "img");
            track.setAttribute("aria-label", `${b.label}: ${b.parts.map(p => p.text).join(", ")}; ${b.summary}`);
            for (const p of b.parts) {
                const part = document.createElement("div");
                part.className = p.tier ? "part tier" : "part";
                part.style.width = `${p.width}%`;
                part.title = p.text;
                part.textContent = p.label;
                track.appendChild(part);
            }
            const budget = document.createElement("div");
            budget.className = "budget";
            budget.style.left = `${b.budgetAt}%`;
            budget.title = `the preset's budget: ${view.gib(b.budget)}`;
            track.appendChild(budget);
            div.append(label, track);
            bars.appendChild(div);
        }
        const tbody = $("tiers").tBodies[0];
        tbody.replaceChildren();
        for (const t of view.diskTiers(state.plan)) {
            const row = tbody.insertRow();
            cell(row, t.tier);
            cell(row, t.what);
            cell(row, t.size);
        }
    }
}

function renderUnits() {
    const s = state.status;
    $("admission").textContent = `${s.queued.length ? `Waiting for an agent slot: ${s.queued.join(", ")}. ` : ""}` +
        `${s.agent_slots} agents may run at once.`;
    const tbody = $("units").tBodies[0];
    tbody.replaceChildren();
    const logs = $("log-unit");
    const chosen = logs.value;
    logs.replaceChildren();
    for (const u of s.units) {
        const r = view.unitRow(u, s.queued);
        const row = tbody.insertRow();
        row.dataset.unit = u.name;
        cell(row, r.name);
        cell(row, r.kind);
        cell(row, r.group);
        cell(row, r.state, `state-${r.state}`);
        cell(row, r.restarts, "restarts");
        cell(row, r.detail);
        const td = row.insertCell();
        for (const [label, method] of [["Start", "Start"], ["Stop", "Stop"], ["Restart", "Restart"]])
            actionButton(td, label, r.actions[label.toLowerCase()], () => change(`${label} ${u.name}`, method, [u.name]));
        const option = document.createElement("option");
        option.value = option.textContent = u.name;
        logs.appendChild(option);
    }
    if (chosen)
        logs.value = chosen;
}

/** Pulls in progress, by model: what their last PullChanged said. */
const pulls = new Map();

function renderEvals() {
    const tbody = $("evals").tBodies[0];
    tbody.replaceChildren();
    const rows = view.evalRows(state.evals);
    if (rows.length === 0) {
        const row = tbody.insertRow();
        cell(row, "No eval yet: run aitherctl eval (as an admin) to see how the agents do on these models.").colSpan = 7;
    }
    for (const r of rows) {
        const row = tbody.insertRow();
        for (const v of [r.model, r.suite, r.rate, r.interval, r.runs, r.outputs, r.when])
            cell(row, v);
    }
}

function renderModels() {
    $("model-dir").textContent = `Model files in ${state.models.model_dir}.`;
    const tbody = $("models").tBodies[0];
    tbody.replaceChildren();
    for (const m of state.models.models) {
        const r = view.modelRow(m);
        const row = tbody.insertRow();
        row.dataset.model = m.name;
        cell(row, r.name);
        cell(row, r.role);
        cell(row, r.quant);
        cell(row, r.file, r.file === "missing" ? "state-failed" : "state-running");
        cell(row, r.size);
        cell(row, r.worker, `state-${r.worker}`);
        const td = row.insertCell();
        td.className = "pull";
        const p = pulls.get(m.name);
        if (p) {
            const bar = document.createElement("progress");
            bar.max = 100;
            if (p.value !== null)
                bar.value = p.value;
            const text = document.createElement("span");
            text.textContent = ` ${p.text}`;
            td.append(bar, text);
        } else if (!m.present) {
            actionButton(td, "Pull", true, () => change(`Pull ${m.name}`, "PullModel", [m.name]));
        }
        if (view.removable(m, Boolean(p)))
            actionButton(td, "Remove", true, () => {
                if (window.confirm(`Remove ${m.name}? Its worker stops and ${m.path} is deleted; Pull brings it back.`))
                    change(`Remove ${m.name}`, "RemoveModel", [m.name]);
            });
    }
}

const SVG = "http://www.w3.org/2000/svg";

/** The inference view: each worker's charts over the window agentd keeps. */
function renderInference(doc) {
    const minutes = Math.round(doc.window_seconds / 60);
    $("inference-about").textContent = `Sampled every ${doc.interval_seconds} s by agentd from each running worker's metrics; ` +
        `the last ${minutes} minutes, now at the right. A break in a line: the worker was not running.`;
    const box = $("inference");
    box.replaceChildren();
    if (!doc.workers.length) {
        const p = document.createElement("p");
        p.textContent = `No worker ran in the last ${minutes} minutes. A worker starts with the first request for its model ` +
            "(or at boot when the preset pins it); its figures appear here within seconds.";
        box.appendChild(p);
        return;
    }
    for (const w of doc.workers) {
        const h = document.createElement("h3");
        h.textContent = `${w.model} (${w.unit})`;
        const charts = document.createElement("div");
        charts.className = "charts";
        charts.dataset.unit = w.unit;
        for (const c of view.inferenceCharts(w, doc)) {
            const fig = document.createElement("figure");
            fig.className = "chart";
            fig.dataset.peak = String(c.peak);
            const caption = document.createElement("figcaption");
            const title = document.createElement("span");
            title.textContent = c.title;
            const latest = document.createElement("span");
            latest.className = "latest";
            latest.textContent = c.latest;
            caption.append(title, latest);
            const svg = document.createElementNS(SVG, "svg");
            svg.setAttribute("viewBox", `0 0 ${view.CHART.width} ${view.CHART.height}`);
            svg.setAttribute("preserveAspectRatio", "none");
            svg.setAttribute("role", "img");
            svg.setAttribute("aria-label", `${c.title} over the last ${minutes} minutes, up to ${c.top} ${c.unit}: ${c.latest}`);
            for (const series of c.series) {
                const path = document.createElementNS(SVG, "path");
                path.setAttribute("class", series.name);
                path.setAttribute("d", series.d);
                svg.appendChild(path);
            }
            const axis = document.createElement("div");
            axis.className = "axis";
            for (const t of [`${minutes} min ago`, `top: ${c.top} ${c.unit}`, "now"]) {
                const span = document.createElement("span");
                span.textContent = t;
                axis.appendChild(span);
            }
            const key = document.createElement("div");
            key.className = "key";
            for (const series of c.series) {
                const span = document.createElement("span");
                span.className = series.name;
                span.textContent = series.name;
                key.appendChild(span);
            }
            fig.append(caption, svg, axis, key);
            charts.appendChild(fig);
        }
        box.append(h, charts);
    }
}

async function refreshInference() {
    try {
        renderInference(await fetchDoc("Inference", [], "inference figures"));
    } catch (e) {
        problem(view.explain(e, "Reading the inference figures"));
    }
}

/** The run whose steps are shown, if any. */
let shownRun = null;

function renderRun() {
    const run = shownRun && state.runs.runs.find(r => r.id === shownRun);
    $("run-detail").hidden = !run;
    if (!run)
        return;
    $("run-detail-title").textContent = `Run ${run.id}: ${run.workflow}, ${run.state}`;
    const tbody = $("steps").tBodies[0];
    tbody.replaceChildren();
    for (const r of view.stepRows(run)) {
        const row = tbody.insertRow();
        row.dataset.step = r.name;
        cell(row, r.name);
        cell(row, r.state, `state-${r.state}`);
        cell(row, r.work);
        cell(row, r.said);
        const td = row.insertCell();
        for (const name of r.outputs) {
            const b = document.createElement("button");
            b.type = "button";
            b.className = "link";
            b.textContent = name;
            // Artifacts, like transcripts, are for those who may change things.
            b.disabled = !may.allowed;
            if (!may.allowed)
                b.title = may.why;
            b.addEventListener("click", () => showArtifact(run.id, r.name, name));
            td.appendChild(b);
        }
    }
}

async function showArtifact(run, step, name) {
    try {
        const a = await fetchDoc("RunArtifact", [run, step, name], `output ${name}`);
        $("artifact-title").hidden = $("artifact").hidden = false;
        $("artifact-title").textContent = `${name} (step ${step}, ${a.bytes} bytes${a.truncated ? ", its beginning" : ""})`;
        $("artifact").textContent = a.text;
    } catch (e) {
        problem(view.explain(e, `Reading ${name} of ${run}`));
    }
}

function onPull(_path, _iface, _signal, [model, done, total, pullState, message]) {
    const p = view.pullProgress(Number(done), Number(total), pullState, message);
    if (p.finished) {
        pulls.delete(model);
        if (pullState === "failed")
            problem(`Pull ${model}: ${message}`);
        else
            notice(`Pull ${model}: ${message}`);
        refreshSoon();
    } else {
        pulls.set(model, p);
        if (state.models)
            renderModels();
    }
}

function renderWorkflows() {
    const tbody = $("approvals").tBodies[0];
    tbody.replaceChildren();
    for (const a of state.approvals.approvals) {
        const row = tbody.insertRow();
        row.dataset.approval = a.id;
        cell(row, a.id);
        cell(row, a.proposal.kind === "publish" ? `publish outputs/${a.proposal.file}` : `${a.proposal.kind} ${a.proposal.unit || a.proposal.model || ""}`.trim());
        const why = cell(row, a.proposal.reason);
        if (a.preview) {
            // What a publish would send, before anyone approves it.
            const details = document.createElement("details");
            const summary = document.createElement("summary");
            summary.textContent = a.preview.cut ? `content (first KiB of ${a.preview.bytes} bytes)` : `content (${a.preview.bytes} bytes)`;
            const pre = document.createElement("pre");
            pre.textContent = a.preview.head;
            details.append(summary, pre);
            why.appendChild(details);
        }
        cell(row, `${a.run_id} (step ${a.step})`);
        cell(row, a.state + (a.decided_by ? ` by ${a.decided_by}` : ""), `state-${a.state}`);
        const td = row.insertCell();
        const pending = a.state === "pending";
        actionButton(td, "Approve", pending, () => change(`Approve ${a.id}`, "Approve", [a.id]));
        actionButton(td, "Deny", pending, () => change(`Deny ${a.id}`, "Deny", [a.id]));
    }
    const runs = $("runs").tBodies[0];
    runs.replaceChildren();
    for (const run of state.runs.runs) {
        const r = view.runRow(run);
        const row = runs.insertRow();
        row.dataset.run = run.id;
        cell(row, r.id);
        cell(row, r.workflow);
        cell(row, r.state + (r.reason ? `: ${r.reason}` : ""), `state-${r.state}`);
        cell(row, r.steps);
        cell(row, r.pending);
        cell(row, r.trigger);
        const td = row.insertCell();
        const b = document.createElement("button");
        b.type = "button";
        b.className = "link";
        b.textContent = "Steps";
        b.addEventListener("click", () => {
            shownRun = run.id;
            $("artifact-title").hidden = $("artifact").hidden = true;
            renderRun();
        });
        td.appendChild(b);
    }
    renderRun();
    const defs = $("workflows").tBodies[0];
    defs.replaceChildren();
    for (const w of state.workflows.workflows) {
        const row = defs.insertRow();
        cell(row, w.name);
        cell(row, w.enabled ? "on" : "off");
        cell(row, w.steps.map(s => s.name).join(" → "));
        cell(row, w.description);
    }
}

async function showLog() {
    const unit = $("log-unit").value;
    if (!unit)
        return;
    try {
        const reply = await fetchDoc("LogTarget", [unit], "log target");
        const t = reply.target;
        let args;
        if (t.kind === "journal")
            // The lines of the stream agentd opened for the unit, not anyone's with its name.
            args = ["journalctl", "--no-pager", "-o", "short-iso", "-n", "300", ...t.matches];
        else if (t.kind === "file")
            args = ["tail", "-n", "300", t.path];
        else {
            $("log").textContent = `${unit} logs nowhere (${t.kind}).`;
            return;
        }
        // journalctl says on stderr when this account sees only its own messages.
        const text = await cockpit.spawn(args, { err: "out" });
        $("log").textContent = text;
        if (view.journalHidden(text))
            problem(`Logs of ${unit}: ${view.JOURNAL_HINT}`);
    } catch (e) {
        $("log").textContent = "";
        problem(e.problem === "access-denied" || /permission|not seeing messages/i.test(e.message || "")
            ? `Logs of ${unit}: ${view.JOURNAL_HINT}`
            : view.explain(e, `Logs of ${unit}`));
    }
}

async function refresh() {
    try {
        const [status, runs, approvals, workflows, models, evals] = await Promise.all([
            fetchDoc("Status", [], "status"),
            fetchDoc("Runs", [], "run list"),
            fetchDoc("Approvals", [], "approval queue"),
            fetchDoc("Workflows", [], "workflow list"),
            fetchDoc("Models", [], "model list"),
            fetchDoc("EvalResults", [], "eval results"),
        ]);
        Object.assign(state, { status, runs, approvals, workflows, models, evals });
        if (!state.plan) {
            const [plan, profile, preset] = await Promise.all([
                fetchDoc("Plan", [], "plan"),
                fetchDoc("Profile", [], "profile"),
                fetchDoc("Preset", [], "preset"),
            ]);
            Object.assign(state, { plan, profile, preset });
        }
        $("summary").textContent = status.summary;
        renderMachine();
        renderUnits();
        renderModels();
        renderEvals();
        renderWorkflows();
        if ($("problem").dataset.kind === "load")
            problem("");
    } catch (e) {
        problem(view.explain(e, "Reading the appliance's state"));
        $("problem").dataset.kind = "load";
        $("summary").textContent = "agentd did not answer.";
    }
}

let pending = null;
function refreshSoon() {
    if (!pending)
        pending = setTimeout(() => { pending = null; refresh() }, 300);
}

function select(name) {
    for (const b of document.querySelectorAll("nav button"))
        b.setAttribute("aria-pressed", String(b.dataset.view === name));
    for (const s of document.querySelectorAll("main section"))
        s.hidden = s.id !== `view-${name}`;
    if (name === "logs")
        showLog();
    if (name === "inference")
        refreshInference();
}

// The charts follow agentd's samples while they are on screen.
setInterval(() => {
    if (!$("view-inference").hidden)
        refreshInference();
}, 5000);

for (const b of document.querySelectorAll("nav button"))
    b.addEventListener("click", () => select(b.dataset.view));
$("log-refresh").addEventListener("click", showLog);
$("log-unit").addEventListener("change", showLog);

cockpit.user().then(user => {
    may = view.permission(user);
    $("who").textContent = may.allowed ? `Signed in as ${user.name}: you may start, stop and approve.` : may.why;
    refresh();
});
for (const member of ["UnitChanged", "RunChanged", "ApprovalChanged"])
    client.subscribe({ interface: IFACE, path: PATH, member }, refreshSoon);
client.subscribe({ interface: IFACE, path: PATH, member: "PullChanged" }, onPull);
client.addEventListener("close", (_event, options) => problem(view.explain(options || { problem: "disconnected" })));
refresh();
