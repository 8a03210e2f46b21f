//! The console wizard (ratatui, keyboard only, laid out for an 80×25 console).
//!
//! Pages, in order: the hardware and the preset it selects; the preset (keep it or choose
//! another); the administrator; the network; host name and time zone; the models; the
//! workflow packs to turn on (the preset's ticked); the cloud
//! fallback (asked right after the preset on `cpu-only`, where it matters most); a review;
//! then apply with progress, and a summary.
//!
//! Every page is a form of fields. The wizard keeps no rules of its own: the fields make an
//! [`Answers`] draft — the answers file's schema — and leaving a page runs the same
//! [`answers::validate`] the headless path runs, showing the problems whose keys belong to
//! that page. The review validates everything; apply is the same [`apply::apply`].
//!
//! Keys: Tab/↓ and Shift-Tab/↑ move between fields, ←/→ change a choice, Space ticks a box,
//! Ctrl-U clears a field, Enter goes on, Esc goes back, Ctrl-C quits (leaving the machine
//! unconfigured).

use std::sync::mpsc;
use std::time::Duration;

use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::DefaultTerminal;

use crate::answers::{self, Admin, Answers, Cloud, Interface, Models, Problem};
use crate::apply::{self, Event, Report};
use crate::cli::{describe, Context, EXIT_CANTCREAT};
use crate::network::{self, Link};
use crate::source::Origin;

mod draw;
use draw::hardware_lines;

/// Exit status when the admin quits the wizard: the machine stays unconfigured.
pub const EXIT_QUIT: i32 = 75;
/// Interfaces shown; more are left to nmtui.
const MAX_LINKS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    Hardware,
    Preset,
    Admin,
    Network,
    System,
    Models,
    Workflows,
    Cloud,
    Review,
}

impl Page {
    fn title(self) -> &'static str {
        match self {
            Page::Hardware => "This machine",
            Page::Preset => "Preset",
            Page::Admin => "Administrator",
            Page::Network => "Network",
            Page::System => "Host name and time zone",
            Page::Models => "Models",
            Page::Workflows => "Workflow packs",
            Page::Cloud => "Cloud fallback",
            Page::Review => "Review",
        }
    }

    /// The answer keys this page's fields set.
    fn keys(self) -> &'static [&'static str] {
        match self {
            Page::Hardware | Page::Review => &[],
            Page::Preset => &["preset"],
            Page::Admin => &["admin"],
            Page::Network => &["network"],
            Page::System => &["system"],
            Page::Models => &["models"],
            Page::Workflows => &["workflows"],
            Page::Cloud => &["cloud"],
        }
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Text,
    Secret,
    Choice(Vec<String>),
    Check,
}

#[derive(Debug, Clone)]
struct Field {
    /// What the field sets: an answer key, or a wizard-only id (`admin.confirm`).
    id: String,
    label: String,
    kind: Kind,
    text: String,
    /// Choice index, or 1/0 for a check box.
    choice: usize,
    /// Shown only while this field of the same page has this choice (static addresses).
    shown_if: Option<(String, usize)>,
}

impl Field {
    fn text(id: &str, label: &str, value: &str) -> Field {
        Field { id: id.into(), label: label.into(), kind: Kind::Text, text: value.into(), choice: 0, shown_if: None }
    }
    fn secret(id: &str, label: &str) -> Field {
        Field { kind: Kind::Secret, ..Field::text(id, label, "") }
    }
    fn choice(id: &str, label: &str, options: &[&str], chosen: usize) -> Field {
        Field {
            kind: Kind::Choice(options.iter().map(|s| (*s).to_string()).collect()),
            choice: chosen,
            ..Field::text(id, label, "")
        }
    }
    fn check(id: &str, label: &str, on: bool) -> Field {
        Field { kind: Kind::Check, choice: usize::from(on), ..Field::text(id, label, "") }
    }
    fn shown_if(mut self, id: &str, choice: usize) -> Field {
        self.shown_if = Some((id.into(), choice));
        self
    }
    fn chosen(&self) -> &str {
        match &self.kind {
            Kind::Choice(o) => o.get(self.choice).map_or("", String::as_str),
            _ => "",
        }
    }
}

enum Mode {
    Editing,
    ConfirmQuit,
    Applying { log: Vec<String>, transfer: Option<(String, u64, Option<u64>)> },
    Done { result: Result<Report, String> },
}

struct Wizard<'a> {
    ctx: &'a Context,
    pages: Vec<Page>,
    page: usize,
    fields: Vec<(Page, Field)>,
    focus: usize,
    problems: Vec<Problem>,
    /// What applying would write, from the last check (shown on the review page).
    review: Vec<String>,
    notice: Option<String>,
    selected: Option<(String, String)>,
    hardware: Vec<String>,
    links: Vec<Link>,
    mode: Mode,
}

/// Run the wizard on the terminal; `draft` prefills it (answers that did not validate).
pub fn run(ctx: &Context, draft: Option<Answers>, origin: Option<Origin>) -> anyhow::Result<i32> {
    let mut w = Wizard::new(ctx, draft.as_ref());
    if let (Some(d), Some(o)) = (&draft, &origin) {
        if let Err(p) = answers::validate(d, &ctx.env().target()) {
            w.problems = p;
            w.notice = Some(format!("{} did not validate: fix what is marked, or start over", o.describe()));
        }
    }
    let mut terminal = ratatui::init();
    let result = w.event_loop(&mut terminal);
    ratatui::restore();
    let code = result?;
    if let Mode::Done { result } = &w.mode {
        print_summary(result);
    }
    Ok(code)
}

fn print_summary(result: &Result<Report, String>) {
    match result {
        Ok(r) => {
            eprintln!("AitherOS is configured.");
            for l in &r.done {
                eprintln!("  {l}");
            }
            for l in &r.warnings {
                eprintln!("  warning: {l}");
            }
        }
        Err(e) => eprintln!("aither-firstboot: {e}"),
    }
}

impl<'a> Wizard<'a> {
    fn new(ctx: &'a Context, draft: Option<&Answers>) -> Wizard<'a> {
        let selected = ctx.selected_preset();
        let hardware = match &ctx.profile {
            Some(p) => hardware_lines(p),
            None => vec!["The hardware profile is not available (aither-hwprofile did not run).".into()],
        };
        let links: Vec<Link> = network::links(&ctx.root).into_iter().take(MAX_LINKS).collect();
        let mut w = Wizard {
            ctx,
            pages: Vec::new(),
            page: 0,
            fields: Vec::new(),
            focus: 0,
            problems: Vec::new(),
            review: Vec::new(),
            notice: None,
            selected,
            hardware,
            links,
            mode: Mode::Editing,
        };
        w.build_fields(draft.cloned().unwrap_or_default());
        w.order_pages();
        w
    }

    fn build_fields(&mut self, d: Answers) {
        let auto = match &self.selected {
            Some((name, _)) => format!("auto ({name})"),
            None => "auto".into(),
        };
        let mut presets: Vec<&str> = vec![auto.as_str()];
        presets.extend(self.ctx.presets.by_name.keys().map(String::as_str));
        let chosen = d.preset.as_deref().and_then(|p| presets.iter().position(|x| *x == p)).unwrap_or(0);
        self.fields.push((Page::Preset, Field::choice("preset", "Preset", &presets, chosen)));

        let admin = d.admin.clone().unwrap_or_default();
        let user = if admin.user.is_empty() { "admin".to_string() } else { admin.user.clone() };
        let mut pw = Field::secret("admin.password", "Password");
        pw.text = admin.password.clone().unwrap_or_default();
        let mut confirm = Field::secret("admin.confirm", "Password again");
        confirm.text = pw.text.clone();
        self.fields.extend([
            (Page::Admin, Field::text("admin.user", "User name", &user)),
            (Page::Admin, pw),
            (Page::Admin, confirm),
            (
                Page::Admin,
                Field::text("admin.ssh_key", "SSH public key", admin.ssh_keys.first().map_or("", String::as_str)),
            ),
        ]);

        for (i, l) in self.links.clone().iter().enumerate() {
            let given = d.network.iter().find(|n| n.interface == l.name);
            let method = match given.map(|g| g.method.as_str()) {
                Some("dhcp") => 1,
                Some("static") => 2,
                _ => 0,
            };
            let m = format!("net{i}.method");
            let label = format!("{} ({}{})", l.name, l.state, if l.wireless { ", Wi-Fi: use nmtui" } else { "" });
            self.fields.push((Page::Network, Field::choice(&m, &label, &["leave as is", "DHCP", "static"], method)));
            let v = |f: fn(&Interface) -> String| given.map(f).unwrap_or_default();
            self.fields.extend([
                (
                    Page::Network,
                    Field::text(
                        &format!("net{i}.address"),
                        "  Address/prefix",
                        &v(|g| g.address.clone().unwrap_or_default()),
                    )
                    .shown_if(&m, 2),
                ),
                (
                    Page::Network,
                    Field::text(&format!("net{i}.gateway"), "  Gateway", &v(|g| g.gateway.clone().unwrap_or_default()))
                        .shown_if(&m, 2),
                ),
                (
                    Page::Network,
                    Field::text(&format!("net{i}.dns"), "  DNS servers", &v(|g| g.dns.join(" "))).shown_if(&m, 2),
                ),
            ]);
        }

        let hostname = d.system.hostname.clone().unwrap_or_else(|| {
            std::fs::read_to_string(self.ctx.root.join("etc/hostname"))
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty() && h != "localhost" && !h.starts_with("localhost."))
                .unwrap_or_else(|| "aither".into())
        });
        let timezone = d.system.timezone.clone().unwrap_or_else(|| {
            std::fs::read_link(self.ctx.root.join("etc/localtime"))
                .ok()
                .and_then(|t| t.to_string_lossy().split_once("zoneinfo/").map(|(_, z)| z.to_string()))
                .unwrap_or_else(|| "UTC".into())
        });
        self.fields.extend([
            (Page::System, Field::text("system.hostname", "Host name", &hostname)),
            (Page::System, Field::text("system.timezone", "Time zone", &timezone)),
        ]);

        let models = d.models.clone().unwrap_or_default();
        for (name, label) in self.plan_models() {
            let on = models.names.as_ref().is_none_or(|n| n.contains(&name));
            self.fields.push((Page::Models, Field::check(&format!("model:{name}"), &label, on)));
        }
        let now = usize::from(models.fetch.as_deref() == Some("now"));
        self.fields.extend([
            (Page::Models, Field::choice("models.fetch", "Fetch", &["later", "now"], now)),
            (Page::Models, Field::text("models.source", "From", models.source.as_deref().unwrap_or("catalog"))),
        ]);

        let proposed = self.preset_workflows();
        for pack in aither_api::workflow::PACKS {
            let on = match &d.workflows {
                Some(w) => w.enable.iter().any(|e| e == pack),
                None => proposed.iter().any(|e| e == pack),
            };
            self.fields.push((Page::Workflows, Field::check(&format!("workflow:{pack}"), pack, on)));
        }

        let cloud = d.cloud.clone().unwrap_or_default();
        let mut key = Field::secret("cloud.api_key", "API key");
        key.text = cloud.api_key.clone().unwrap_or_default();
        self.fields.extend([
            (Page::Cloud, Field::text("cloud.endpoint", "Endpoint URL", &cloud.endpoint)),
            (Page::Cloud, Field::text("cloud.model", "Model", cloud.model.as_deref().unwrap_or(""))),
            (Page::Cloud, key),
        ]);
    }

    /// The plan's models for the preset now chosen: (name, label with quantization and size).
    fn plan_models(&self) -> Vec<(String, String)> {
        let preset = self.preset_answer().filter(|p| p != "auto");
        let env = self.ctx.env();
        apply::models_to_fetch(&env, preset.as_deref(), None)
            .into_iter()
            .map(|w| {
                let size = self
                    .ctx
                    .catalog
                    .get(&w.name)
                    .and_then(|m| aither_plan::catalog::file_bytes(m, &w.file))
                    .map(|b| format!(", {}.{} GB", b / 1_000_000_000, b / 100_000_000 % 10))
                    .unwrap_or_default();
                (w.name.clone(), format!("{} ({}{size})", w.name, w.file.quant))
            })
            .collect()
    }

    /// The packs the preset now chosen proposes.
    fn preset_workflows(&self) -> Vec<String> {
        apply::preset_workflows(&self.ctx.env(), self.preset_answer().filter(|p| p != "auto").as_deref())
    }

    /// cpu-only asks for the cloud fallback right after the preset.
    fn order_pages(&mut self) {
        let cpu_only = self.effective_preset().as_deref() == Some("cpu-only");
        let mut pages = vec![Page::Hardware, Page::Preset];
        if cpu_only {
            pages.push(Page::Cloud);
        }
        pages.extend([Page::Admin, Page::Network, Page::System, Page::Models, Page::Workflows]);
        if !cpu_only {
            pages.push(Page::Cloud);
        }
        pages.push(Page::Review);
        if self.links.is_empty() {
            pages.retain(|p| *p != Page::Network);
        }
        let current = self.pages.get(self.page).copied();
        self.pages = pages;
        self.page = current.and_then(|c| self.pages.iter().position(|p| *p == c)).unwrap_or(0);
    }

    fn field(&self, id: &str) -> Option<&Field> {
        self.fields.iter().map(|(_, f)| f).find(|f| f.id == id)
    }

    fn value(&self, id: &str) -> String {
        self.field(id).map(|f| f.text.trim().to_string()).unwrap_or_default()
    }

    fn preset_answer(&self) -> Option<String> {
        self.field("preset").map(|f| if f.choice == 0 { "auto".to_string() } else { f.chosen().to_string() })
    }

    fn effective_preset(&self) -> Option<String> {
        match self.preset_answer().as_deref() {
            Some("auto") | None => self.selected.as_ref().map(|s| s.0.clone()),
            Some(p) => Some(p.to_string()),
        }
    }

    /// The answers the fields say, in the answers file's schema.
    fn answers(&self) -> Answers {
        let opt = |s: String| (!s.is_empty()).then_some(s);
        let mut network = Vec::new();
        for (i, l) in self.links.iter().enumerate() {
            let method = self.field(&format!("net{i}.method")).map_or(0, |f| f.choice);
            if method == 0 {
                continue;
            }
            let stat = method == 2;
            network.push(Interface {
                interface: l.name.clone(),
                method: if stat { "static" } else { "dhcp" }.into(),
                address: opt(self.value(&format!("net{i}.address"))).filter(|_| stat),
                gateway: opt(self.value(&format!("net{i}.gateway"))).filter(|_| stat),
                dns: if stat {
                    self.value(&format!("net{i}.dns"))
                        .split([' ', ','])
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                } else {
                    Vec::new()
                },
            });
        }
        let names: Vec<String> = self
            .fields
            .iter()
            .filter_map(|(_, f)| f.id.strip_prefix("model:").filter(|_| f.choice == 1).map(str::to_string))
            .collect();
        let packs: Vec<String> = self
            .fields
            .iter()
            .filter_map(|(_, f)| f.id.strip_prefix("workflow:").filter(|_| f.choice == 1).map(str::to_string))
            .collect();
        let endpoint = self.value("cloud.endpoint");
        Answers {
            workflows: Some(answers::Workflows { enable: packs }),
            schema_version: Some(answers::SCHEMA_VERSION),
            preset: self.preset_answer(),
            system: answers::System {
                hostname: opt(self.value("system.hostname")),
                timezone: opt(self.value("system.timezone")),
            },
            admin: Some(Admin {
                user: self.value("admin.user"),
                password: self.field("admin.password").map(|f| f.text.clone()).filter(|p| !p.is_empty()),
                password_hash: None,
                ssh_keys: opt(self.value("admin.ssh_key")).into_iter().collect(),
            }),
            network,
            models: Some(Models {
                fetch: Some(self.field("models.fetch").map_or("later", Field::chosen).to_string()),
                source: opt(self.value("models.source")),
                names: Some(names),
            }),
            cloud: opt(endpoint).map(|endpoint| Cloud {
                endpoint,
                model: opt(self.value("cloud.model")),
                api_key: self.field("cloud.api_key").map(|f| f.text.trim().to_string()).filter(|k| !k.is_empty()),
                api_key_file: None,
            }),
        }
    }

    /// Problems with the answers, with the wizard's own check (the password typed twice), and
    /// what applying them would write when they are valid.
    fn check(&self) -> (Vec<String>, Vec<Problem>) {
        let (review, mut problems) = match answers::validate(&self.answers(), &self.ctx.env().target()) {
            Ok(s) => (describe(&s), Vec::new()),
            Err(p) => (Vec::new(), p),
        };
        let (pw, again) = (self.field("admin.password"), self.field("admin.confirm"));
        if pw.map(|f| &f.text) != again.map(|f| &f.text) {
            problems.push(Problem { key: "admin.confirm".into(), message: "the two passwords differ".into() });
        }
        (review, problems)
    }

    fn current(&self) -> Page {
        self.pages[self.page]
    }

    /// Indexes into `fields` of the current page's visible fields.
    fn visible(&self) -> Vec<usize> {
        let page = self.current();
        self.fields
            .iter()
            .enumerate()
            .filter(|(_, (p, f))| {
                *p == page && f.shown_if.as_ref().is_none_or(|(id, c)| self.field(id).is_some_and(|g| g.choice == *c))
            })
            .map(|(i, _)| i)
            .collect()
    }

    fn page_problems(&self) -> Vec<&Problem> {
        let keys = self.current().keys();
        self.problems
            .iter()
            .filter(|p| {
                keys.iter()
                    .any(|k| p.key == *k || p.key.starts_with(&format!("{k}.")) || p.key.starts_with(&format!("{k}[")))
            })
            .collect()
    }

    fn event_loop(&mut self, terminal: &mut DefaultTerminal) -> anyhow::Result<i32> {
        loop {
            terminal.draw(|f| self.draw(f))?;
            if matches!(self.mode, Mode::Applying { .. }) {
                return self.apply(terminal);
            }
            let TermEvent::Key(key) = event::read()? else { continue };
            if key.kind != KeyEventKind::Press {
                continue;
            }
            if let Some(code) = self.on_key(key) {
                return Ok(code);
            }
        }
    }

    /// Handle a key; `Some(status)` ends the wizard.
    fn on_key(&mut self, key: KeyEvent) -> Option<i32> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match &self.mode {
            Mode::ConfirmQuit => {
                if matches!(key.code, KeyCode::Char('y' | 'Y')) {
                    return Some(EXIT_QUIT);
                }
                self.mode = Mode::Editing;
                return None;
            }
            Mode::Done { result } => {
                if key.code == KeyCode::Enter {
                    return Some(if result.is_ok() { 0 } else { EXIT_CANTCREAT });
                }
                return None;
            }
            Mode::Applying { .. } => return None,
            Mode::Editing => {}
        }
        if ctrl && key.code == KeyCode::Char('c') {
            self.mode = Mode::ConfirmQuit;
            return None;
        }
        if ctrl && key.code == KeyCode::Char('u') {
            if let Some(&i) = self.visible().get(self.focus) {
                self.fields[i].1.text.clear();
            }
            return None;
        }
        let visible = self.visible();
        self.focus = self.focus.min(visible.len().saturating_sub(1));
        let focused = visible.get(self.focus).copied();
        match key.code {
            KeyCode::Enter => self.next_page(),
            KeyCode::Esc if self.page > 0 => {
                self.page -= 1;
                self.focus = 0;
                self.notice = None;
            }
            KeyCode::Tab | KeyCode::Down => self.focus = (self.focus + 1).min(visible.len().saturating_sub(1)),
            KeyCode::BackTab | KeyCode::Up => self.focus = self.focus.saturating_sub(1),
            KeyCode::Left | KeyCode::Right => {
                if let Some(i) = focused {
                    let f = &mut self.fields[i].1;
                    if let Kind::Choice(o) = &f.kind {
                        let n = o.len();
                        f.choice = if key.code == KeyCode::Right { (f.choice + 1) % n } else { (f.choice + n - 1) % n };
                    }
                    if f.id == "preset" {
                        self.on_preset_changed();
                    }
                }
            }
            KeyCode::Char(' ') if focused.is_some_and(|i| matches!(self.fields[i].1.kind, Kind::Check)) => {
                if let Some(i) = focused {
                    self.fields[i].1.choice ^= 1;
                }
            }
            KeyCode::Backspace => {
                if let Some(i) = focused {
                    self.fields[i].1.text.pop();
                }
            }
            KeyCode::Char(c) if !ctrl => {
                if let Some(i) = focused {
                    if matches!(self.fields[i].1.kind, Kind::Text | Kind::Secret) {
                        self.fields[i].1.text.push(c);
                    }
                }
            }
            _ => {}
        }
        None
    }

    /// A new preset changes the plan (the models offered) and, for cpu-only, the page order.
    fn on_preset_changed(&mut self) {
        let ticked: Vec<(String, usize)> =
            self.fields.iter().filter(|(p, _)| *p == Page::Models).map(|(_, f)| (f.id.clone(), f.choice)).collect();
        let at = self.fields.iter().position(|(p, _)| *p == Page::Models).unwrap_or(self.fields.len());
        self.fields.retain(|(p, f)| !(*p == Page::Models && f.id.starts_with("model:")));
        let models: Vec<(Page, Field)> = self
            .plan_models()
            .into_iter()
            .map(|(name, label)| {
                let id = format!("model:{name}");
                let on = ticked.iter().find(|(i, _)| *i == id).is_none_or(|(_, c)| *c == 1);
                (Page::Models, Field::check(&id, &label, on))
            })
            .collect();
        let at = at.min(self.fields.len());
        self.fields.splice(at..at, models);
        // The new preset proposes its packs.
        let proposed = self.preset_workflows();
        for (_, f) in self.fields.iter_mut().filter(|(p, _)| *p == Page::Workflows) {
            let pack = f.id.trim_start_matches("workflow:");
            f.choice = usize::from(proposed.iter().any(|p| p == pack));
        }
        self.order_pages();
    }

    fn next_page(&mut self) {
        let page = self.current();
        (self.review, self.problems) = self.check();
        self.notice = None;
        if page == Page::Review {
            if self.problems.is_empty() {
                self.mode = Mode::Applying { log: Vec::new(), transfer: None };
            } else {
                self.notice = Some("Fix the problems listed (Esc goes back to their pages)".into());
            }
            return;
        }
        if self.page_problems().is_empty() {
            self.page += 1;
            self.focus = 0;
        }
    }

    /// Run apply on a thread, drawing its progress; then wait for Enter on the summary.
    fn apply(&mut self, terminal: &mut DefaultTerminal) -> anyhow::Result<i32> {
        let answers = self.answers();
        let ctx = self.ctx;
        let (tx, rx) = mpsc::channel::<Event>();
        let result = std::thread::scope(|s| -> anyhow::Result<Result<Report, String>> {
            let worker = s.spawn(move || {
                let env = ctx.env();
                apply::validate_and_apply(&answers, &env, &mut |e| {
                    let _ = tx.send(e);
                })
                .map_err(|e| e.to_string())
            });
            loop {
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(e) => self.on_progress(e),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
                terminal.draw(|f| self.draw(f))?;
            }
            Ok(worker.join().unwrap_or_else(|_| Err("apply stopped unexpectedly".into())))
        })?;
        self.mode = Mode::Done { result };
        loop {
            terminal.draw(|f| self.draw(f))?;
            if let TermEvent::Key(key) = event::read()? {
                if key.kind == KeyEventKind::Press {
                    if let Some(code) = self.on_key(key) {
                        return Ok(code);
                    }
                }
            }
        }
    }

    fn on_progress(&mut self, e: Event) {
        let Mode::Applying { log, transfer } = &mut self.mode else { return };
        match e {
            Event::Step(s) => {
                *transfer = None;
                log.push(format!("» {s}"));
            }
            Event::Done(s) => log.push(format!("  ✓ {s}")),
            Event::Warning(s) => log.push(format!("  ! {s}")),
            Event::Transfer { what, done, total } => *transfer = Some((what, done, total)),
        }
    }
}
