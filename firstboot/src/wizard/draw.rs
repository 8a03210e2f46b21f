//! The wizard on screen: the page's fields, its problems, the progress of apply and the summary.

use ratatui::layout::{Constraint, Layout, Position};
use ratatui::style::{Color, Modifier, Style, Stylize as _};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Gauge, Paragraph, Wrap};
use ratatui::Frame;

use super::*;

impl Wizard<'_> {
    pub(super) fn draw(&self, f: &mut Frame) {
        let [title, body, problems, help] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(5),
            Constraint::Length(self.problem_lines(f.area().width)),
            Constraint::Length(1),
        ])
        .areas(f.area());
        let step = match &self.mode {
            Mode::Applying { .. } => "Applying".to_string(),
            Mode::Done { .. } => "Done".to_string(),
            _ => format!("Step {} of {}: {}", self.page + 1, self.pages.len(), self.current().title()),
        };
        f.render_widget(
            Paragraph::new(Line::from(vec![
                Span::raw(" AitherOS first boot ").bold().reversed(),
                Span::raw(format!("  {step}")),
            ])),
            title,
        );
        match &self.mode {
            Mode::Applying { log, transfer } => self.draw_progress(f, body, log, transfer.as_ref()),
            Mode::Done { result } => Self::draw_done(f, body, result),
            Mode::Editing | Mode::ConfirmQuit => self.draw_page(f, body),
        }
        let shown: Vec<Line> = match (&self.mode, &self.notice) {
            (Mode::Editing | Mode::ConfirmQuit, notice) => notice
                .iter()
                .map(|n| Line::from(n.clone()).yellow())
                .chain(self.shown_problems().iter().map(|p| Line::from(format!("✗ {p}")).red()))
                .collect(),
            _ => Vec::new(),
        };
        f.render_widget(Paragraph::new(shown).wrap(Wrap { trim: false }), problems);
        let keys = match self.mode {
            Mode::ConfirmQuit => " Quit without configuring? The wizard runs again at the next boot. y / n",
            Mode::Applying { .. } => " Applying: please wait",
            Mode::Done { .. } => " Enter: continue to the login prompt",
            Mode::Editing if self.current() == Page::Review => " Enter: apply   Esc: back   Ctrl-C: quit",
            Mode::Editing => " Tab/↑↓: field  ←→: choose  Space: tick  Enter: next  Esc: back  Ctrl-C: quit",
        };
        f.render_widget(Paragraph::new(keys).style(Style::default().add_modifier(Modifier::REVERSED)), help);
    }

    fn shown_problems(&self) -> Vec<&Problem> {
        if self.current() == Page::Review {
            self.problems.iter().collect()
        } else {
            self.page_problems()
        }
    }

    /// Rows for the notice and the problems, wrapped at `width`; 8 at most.
    fn problem_lines(&self, width: u16) -> u16 {
        if !matches!(self.mode, Mode::Editing | Mode::ConfirmQuit) {
            return 0;
        }
        let width = usize::from(width.max(20));
        let rows = |s: &str| s.chars().count().div_ceil(width).max(1);
        let n: usize = self.notice.iter().map(|n| rows(n)).sum::<usize>()
            + self.shown_problems().iter().map(|p| rows(&format!("✗ {p}"))).sum::<usize>();
        u16::try_from(n.min(8)).unwrap_or(8)
    }

    fn draw_page(&self, f: &mut Frame, area: ratatui::layout::Rect) {
        let page = self.current();
        let block = Block::bordered().title(format!(" {} ", page.title()));
        let inner = block.inner(area);
        f.render_widget(block, area);
        let mut lines: Vec<Line> = self.intro(page).into_iter().map(Line::from).collect();
        if !lines.is_empty() {
            lines.push(Line::default());
        }
        let visible = self.visible();
        let mut cursor = None;
        for (n, &i) in visible.iter().enumerate() {
            let field = &self.fields[i].1;
            let focused = n == self.focus;
            let label = format!(" {:<26}", truncate(&field.label, 26));
            let value = match &field.kind {
                Kind::Text => field.text.clone(),
                Kind::Secret => "•".repeat(field.text.chars().count()),
                Kind::Choice(_) => format!("◀ {} ▶", field.chosen()),
                Kind::Check => String::new(),
            };
            let line = if let Kind::Check = field.kind {
                let mark = if field.choice == 1 { "[x]" } else { "[ ]" };
                Line::from(format!(" {mark} {}", field.label))
            } else {
                let width = usize::from(inner.width).saturating_sub(29);
                let shown = tail(&value, width);
                if focused && matches!(field.kind, Kind::Text | Kind::Secret) {
                    let x = inner.x + 28 + u16::try_from(shown.chars().count()).unwrap_or(0);
                    cursor = Some(Position::new(
                        x.min(inner.right().saturating_sub(1)),
                        inner.y + u16::try_from(lines.len()).unwrap_or(0),
                    ));
                }
                Line::from(vec![Span::raw(label), Span::raw(" "), Span::raw(shown).underlined()])
            };
            lines.push(if focused { line.style(Style::default().add_modifier(Modifier::REVERSED)) } else { line });
        }
        if page == Page::Review {
            if self.review.is_empty() {
                lines.push(Line::from(" The answers have problems (below)."));
            }
            lines.extend(self.review.iter().map(|l| Line::from(format!(" {l}"))));
            lines.push(Line::default());
            lines.push(Line::from(" Nothing is written yet. Enter writes it all; if a step fails, nothing."));
        }
        f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
        if let (Some(c), Mode::Editing) = (cursor, &self.mode) {
            f.set_cursor_position(c);
        }
    }

    /// The text above a page's fields.
    fn intro(&self, page: Page) -> Vec<String> {
        match page {
            Page::Hardware => {
                let mut l: Vec<String> = self.hardware.iter().map(|s| format!(" {s}")).collect();
                l.push(String::new());
                match &self.selected {
                    Some((name, reason)) => l.push(format!(" Preset {name}: {reason}")),
                    None => l.push(" No preset can be selected without the hardware profile.".into()),
                }
                l.push(String::new());
                l.push(" Enter to go on. Nothing is written until the review.".into());
                l
            }
            Page::Preset => {
                let desc = self
                    .effective_preset()
                    .and_then(|p| self.ctx.presets.by_name.get(&p).map(|x| x.description.clone()));
                vec![
                    " auto re-selects the preset from the hardware at every boot; a name pins it.".into(),
                    format!(" {}", desc.unwrap_or_default()),
                ]
            }
            Page::Admin => vec![
                " The administrator may use sudo and aitherctl. root stays locked.".into(),
                " Give a password, an SSH public key, or both.".into(),
            ],
            Page::Network => vec![" Interfaces left as they are keep NetworkManager's defaults (DHCP).".into()],
            Page::System => vec![" A time zone like Europe/Berlin, America/New_York or UTC.".into()],
            Page::Models => vec![
                " The models of the plan for this preset. From: catalog (download) or a".into(),
                " directory holding the .gguf files, like a mounted USB stick.".into(),
            ],
            Page::Workflows => vec![
                " Agent workflows to turn on; the preset's are ticked. Each acts only after".into(),
                " a human approves (aitherctl approvals); aitherctl workflows enable|disable".into(),
                " changes this later. devops: heal failing units; research: answer from".into(),
                " documents; content-pipeline, social-media: write and publish; code-review.".into(),
            ],
            Page::Cloud => {
                let mut l = vec![" An OpenAI-compatible endpoint for requests no local model can serve.".into()];
                if self.effective_preset().as_deref() == Some("cpu-only") {
                    l.push(" This machine has no usable GPU: the cloud fallback is recommended.".into());
                }
                l.push(" Leave the endpoint empty for none.".into());
                l
            }
            Page::Review => Vec::new(),
        }
    }

    fn draw_progress(
        &self,
        f: &mut Frame,
        area: ratatui::layout::Rect,
        log: &[String],
        transfer: Option<&(String, u64, Option<u64>)>,
    ) {
        let [logs, gauge] = Layout::vertical([Constraint::Min(3), Constraint::Length(3)]).areas(area);
        let height = usize::from(logs.height.saturating_sub(2));
        let start = log.len().saturating_sub(height);
        let lines: Vec<Line> = log[start..].iter().map(|l| Line::from(l.clone())).collect();
        f.render_widget(Paragraph::new(lines).block(Block::bordered().title(" Applying ")), logs);
        if let Some((what, done, total)) = transfer {
            let (ratio, label) = match total {
                Some(t) if *t > 0 => {
                    let pct = u16::try_from(done.saturating_mul(100) / t).unwrap_or(100).min(100);
                    (pct, format!("{what}: {} of {} MB", done / 1_000_000, t / 1_000_000))
                }
                _ => (0, format!("{what}: {} MB", done / 1_000_000)),
            };
            f.render_widget(
                Gauge::default()
                    .block(Block::bordered())
                    .percent(ratio)
                    .label(label)
                    .gauge_style(Style::default().fg(Color::Cyan)),
                gauge,
            );
        }
    }

    fn draw_done(f: &mut Frame, area: ratatui::layout::Rect, result: &Result<Report, String>) {
        let mut lines = Vec::new();
        match result {
            Ok(r) => {
                lines.push(Line::from(" AitherOS is configured.").bold().green());
                lines.push(Line::default());
                lines.extend(r.done.iter().map(|l| Line::from(format!(" ✓ {l}"))));
                lines.extend(r.warnings.iter().map(|l| Line::from(format!(" ! {l}")).yellow()));
                lines.push(Line::default());
                lines.push(Line::from(" agentd starts next; `aitherctl status` shows what runs."));
            }
            Err(e) => {
                lines.push(Line::from(" Nothing was configured.").bold().red());
                lines.push(Line::from(format!(" {e}")));
                lines.push(Line::from(" The wizard runs again at the next boot."));
            }
        }
        f.render_widget(
            Paragraph::new(lines).wrap(Wrap { trim: false }).block(Block::bordered().title(" Summary ")),
            area,
        );
    }
}

/// The machine in a few lines that fit 80 columns.
pub(super) fn hardware_lines(p: &aither_api::profile::Profile) -> Vec<String> {
    use aither_api::gib;
    let mut l = vec![
        format!("CPU       {} ({} cores, {} threads)", p.cpu.model, p.cpu.physical_cores, p.cpu.logical_cores),
        format!("Memory    {}", gib(p.memory.total_bytes)),
    ];
    let plat = &p.platform;
    let place = match (plat.virtualization.as_str(), &plat.cloud) {
        (_, Some(c)) => format!("cloud ({c})"),
        ("none", None) => "bare metal".to_string(),
        (v, None) => format!("virtual machine ({v})"),
    };
    let sb = match plat.secure_boot {
        Some(true) => ", Secure Boot on",
        Some(false) => ", Secure Boot off",
        None => "",
    };
    l.push(format!("Platform  {place}, {}{sb}", plat.firmware.to_uppercase()));
    if p.gpus.is_empty() {
        l.push("GPUs      none".into());
    }
    for g in &p.gpus {
        let vram = match (g.vram_bytes, g.integrated) {
            (Some(b), _) => gib(b),
            (None, true) => "shared memory".into(),
            (None, false) => "memory unknown".into(),
        };
        l.push(format!("GPU       {}, {vram}", g.name));
        if let Some(d) = p.drivers.iter().find(|d| d.pci_address == g.pci_address) {
            let signed = if d.signed_modules_required { ", signed modules" } else { "" };
            let stack =
                serde_json::to_value(d.stack).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            l.push(format!("          driver: {stack}{signed}"));
        }
    }
    l
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// The end of `s` that fits in `n` columns (long values scroll left while typed).
fn tail(s: &str, n: usize) -> String {
    let count = s.chars().count();
    s.chars().skip(count.saturating_sub(n)).collect()
}
