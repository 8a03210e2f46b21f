#!/usr/bin/env python3
"""The AitherOS page in Cockpit, driven in Debian's Chromium (headless, chromedriver from apt)
against the VM test bed's Cockpit (forwarded to 127.0.0.1:PORT). Prints TAP; exits 1 when a
check fails. Screenshots of each view go to OUT.

As the admin (vmadmin, in aither-admin): log in, open the page, see the preset and the units,
restart an agent and see its restart count change, pull a missing model and see the progress
move, remove it again, see the chat worker's tokens per second charted, approve the pending
proposal and read the run's outputs. As a user outside aither-admin (viewer): see everything,
the actions disabled with the reason, and a restart asked anyway refused by agentd with that
reason on the page.
"""
import argparse
import sys
import time
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

ADMIN = ("vmadmin", "correct horse battery")
VIEWER = ("viewer", "viewer horse battery")
PAGE = "/cockpit/@localhost/aitheros/index.html"

n = 0
failed = 0


def ok(what, cond, detail=""):
    global n, failed
    n += 1
    if cond:
        print(f"ok {n} - {what}", flush=True)
    else:
        failed += 1
        print(f"not ok {n} - {what}", flush=True)
        for line in str(detail).splitlines()[:40]:
            print(f"# {line}", flush=True)


def until(what, fn, timeout=60.0):
    """fn() until it returns something true; None after the timeout."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = fn()
            if last:
                return last
        except WebDriverException as e:
            last = e
        time.sleep(0.5)
    print(f"# waited {timeout:.0f} s for {what}; last: {last!r}"[:400], flush=True)
    return None


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--ignore-certificate-errors", "--window-size=1280,1000"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)


def login(d, base, user):
    d.delete_all_cookies()
    d.get(base + "/")
    def ready():
        f = d.find_element(By.ID, "login-user-input")
        return f if f.is_displayed() and f.is_enabled() else None
    field = until("the login form", ready, 120)
    if not field:
        return False
    field.clear()
    field.send_keys(user[0])
    d.find_element(By.ID, "login-password-input").send_keys(user[1])
    d.find_element(By.ID, "login-button").click()

    # The shell loads once the session is up; the login page says why when it is refused.
    def outcome():
        error = d.find_elements(By.ID, "login-error-message")
        if error and error[0].is_displayed() and error[0].text.strip():
            return f"refused: {error[0].text.strip()}"
        form = d.find_elements(By.ID, "login-user-input")
        if not form or not form[0].is_displayed():
            return "in"
        return None
    got = until("the session", outcome, 120)
    if got != "in":
        print(f"# login as {user[0]}: {got or 'no answer'}", flush=True)
    return got == "in"


def open_page(d, base):
    d.get(base + PAGE)
    return until("the page to read agentd", lambda: "preset" in d.find_element(By.ID, "summary").text, 120)


def view(d, name):
    d.find_element(By.CSS_SELECTOR, f'nav button[data-view="{name}"]').click()


def unit_row(d, unit):
    return d.find_element(By.CSS_SELECTOR, f'#units tr[data-unit="{unit}"]')


def press(what, find, timeout=30.0):
    """Click what find() gives, again if the page re-rendered it under us (a stale element)."""
    return until(what, lambda: find().click() or True, timeout)


def shot(d, out, name):
    out.mkdir(parents=True, exist_ok=True)
    d.save_screenshot(str(out / f"{name}.png"))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    base = f"https://127.0.0.1:{a.port}"
    d = browser()
    try:
        checks(d, base, a.out)
    except Exception as e:  # a step that could not even run is a failed check, with its page
        ok(f"the browser checks ran to their end ({type(e).__name__})", False, f"{e}\n{d.current_url}")
        shot(d, a.out, "failure")
    finally:
        d.quit()
    print(f"1..{n}")
    return 1 if failed else 0


def checks(d, base, out):
    ok("the admin logs in to Cockpit", login(d, base, ADMIN))
    ok("the AitherOS page reads agentd: the preset in its summary", open_page(d, base),
       d.find_element(By.TAG_NAME, "body").text)
    body = d.find_element(By.TAG_NAME, "body").text
    ok("the machine view shows the preset and why, and the memory bars",
       "cpu-only" in body and d.find_elements(By.CSS_SELECTOR, "#bars .bar .track"), body)
    ok("the admin is told they may act", "you may start, stop and approve" in d.find_element(By.ID, "who").text)
    shot(d, out, "machine")

    view(d, "units")
    row = until("vm-a in the units", lambda: unit_row(d, "vm-a"))
    ok("the units view lists the agents with their state", row is not None and "running" in row.text,
       row.text if row else "")
    before = int(unit_row(d, "vm-a").find_element(By.CSS_SELECTOR, "td.restarts").text)
    shot(d, out, "units")
    restart = unit_row(d, "vm-a").find_element(By.XPATH, './/button[text()="Restart"]')
    ok("Restart is enabled for the admin", restart.is_enabled())
    restart.click()
    after = until("the restart count to change",
                  lambda: int(unit_row(d, "vm-a").find_element(By.CSS_SELECTOR, "td.restarts").text) > before, 90)
    ok(f"restarting vm-a from the page raises its restart count (was {before})", after,
       d.find_element(By.ID, "notice").text + d.find_element(By.ID, "problem").text)

    view(d, "models")
    ok("the models view shows the plan's models and their files",
       until("the models", lambda: "phi-3.5-mini-instruct" in d.find_element(By.ID, "models").text),
       d.find_element(By.ID, "models").text)
    shot(d, out, "models")

    # Pull the missing embedding model from the guest's model server: the progress moves.
    row = until("the missing model's Pull", lambda: d.find_element(By.CSS_SELECTOR, '#models tr[data-model="nomic-embed-text-v1.5"]'))
    pull = row.find_element(By.XPATH, './/button[text()="Pull"]') if row else None
    ok("a missing model offers Pull to the admin", pull is not None and pull.is_enabled())
    if pull is not None:
        pull.click()
        shown = []

        def moving():
            cells = d.find_elements(By.CSS_SELECTOR, '#models tr[data-model="nomic-embed-text-v1.5"] td.pull progress')
            if cells:
                value = cells[0].get_attribute("value")
                if value and value not in shown:
                    shown.append(value)
            return len(shown) >= 2
        until("the pull's progress to move", moving, 90)
        shot(d, out, "pulling")
        ok(f"the pull's progress moves on the page ({', '.join(shown)} %)", len(shown) >= 2, shown)
        embed_row = '#models tr[data-model="nomic-embed-text-v1.5"]'
        present = until("the model to be present", lambda: "present" in d.find_element(By.CSS_SELECTOR, embed_row).text, 120)
        ok("then the model is present, its worker no longer blocked",
           present and "blocked" not in d.find_element(By.CSS_SELECTOR, embed_row).text,
           d.find_element(By.ID, "models").text + d.find_element(By.ID, "problem").text)
        # Remove it again: a confirmation, then agentd stops the worker and deletes the file.
        remove = until("Remove on the present model", lambda: d.find_element(By.CSS_SELECTOR, embed_row).find_element(
            By.XPATH, './/button[text()="Remove"]'))
        ok("a present model offers Remove to the admin", remove is not None and remove.is_enabled())
        if remove is not None:
            press("Remove", lambda: d.find_element(By.CSS_SELECTOR, embed_row).find_element(By.XPATH, './/button[text()="Remove"]'))
            alert = until("the confirmation", lambda: d.switch_to.alert, 10)
            ok("Remove asks for a confirmation that names the file", alert is not None and "nomic-embed-text-v1.5.f16.gguf" in alert.text,
               alert.text if alert else "")
            if alert is not None:
                alert.accept()
            gone = until("the model to be missing again", lambda: [
                b for b in d.find_element(By.CSS_SELECTOR, embed_row).find_elements(By.XPATH, './/button[text()="Pull"]')], 90)
            ok("then it is missing again, with Pull offered", gone and "missing" in d.find_element(By.CSS_SELECTOR, embed_row).text,
               d.find_element(By.ID, "models").text + d.find_element(By.ID, "notice").text + d.find_element(By.ID, "problem").text)

    # The guest asked the chat worker for completions: agentd's samples of its metrics, charted.
    view(d, "inference")
    chat = "infer-phi-3.5-mini-instruct"

    def charted():
        figs = d.find_elements(By.CSS_SELECTOR, f'#inference .charts[data-unit="{chat}"] figure.chart')
        return figs if figs and float(figs[0].get_attribute("data-peak") or 0) > 0 else None
    figs = until("the chat worker's tokens per second", charted, 60)
    ok("the inference view charts the chat worker's tokens per second, queue and KV cache",
       figs and len(figs) == 3 and figs[0].find_element(By.CSS_SELECTOR, "path.generated").get_attribute("d"),
       d.find_element(By.ID, "view-inference").text + d.find_element(By.ID, "problem").text)
    shot(d, out, "inference")

    view(d, "workflows")
    approved_run = "devops"
    pending = until("a pending proposal", lambda: [r for r in d.find_elements(By.CSS_SELECTOR, "#approvals tbody tr")
                                                   if "pending" in r.text], 90)
    ok("the workflows view shows the pending proposal", pending, d.find_element(By.ID, "approvals").text)
    shot(d, out, "workflows")
    if pending:
        approval = pending[0].get_attribute("data-approval")
        pending[0].find_element(By.XPATH, './/button[text()="Approve"]').click()
        done = until("the proposal to be carried out", lambda: [
            r for r in d.find_elements(By.CSS_SELECTOR, "#approvals tbody tr")
            if r.get_attribute("data-approval") == approval and "done by" in r.text], 90)
        ok(f"approving {approval} from the page carries it out, recorded with who decided", done,
           d.find_element(By.ID, "approvals").text + d.find_element(By.ID, "problem").text)
        shot(d, out, "approved")
        # The run goes on to its report; its steps and their outputs, read on the page.
        run = approved_run = approval.rsplit(".", 1)[0]
        run_row = f'#runs tr[data-run="{run}"]'
        completed = until(f"{run} to complete", lambda: "completed" in d.find_element(By.CSS_SELECTOR, run_row).text, 120)
        ok(f"{run} completes after the decision", completed, d.find_element(By.ID, "runs").text)
        press(f"{run}'s Steps", lambda: d.find_element(By.CSS_SELECTOR, run_row).find_element(By.XPATH, './/button[text()="Steps"]'))
        steps = until("the run's steps", lambda: [r.get_attribute("data-step") for r in d.find_elements(By.CSS_SELECTOR, "#steps tbody tr")])
        ok(f"Steps shows {run}'s steps with their work", steps == ["detect", "fix", "report"] and "turns" in d.find_element(By.ID, "steps").text,
           d.find_element(By.ID, "run-detail").text)
        for step, name, text in [("detect", "diagnosis.json", "its database refused the connection"),
                                 ("report", "report.md", "Restarted after an admin approved it in Cockpit.")]:
            press(name, lambda: d.find_element(By.CSS_SELECTOR, f'#steps tr[data-step="{step}"]').find_element(
                By.XPATH, f'.//button[text()="{name}"]'))
            shown = until(f"{name} on the page", lambda: text in d.find_element(By.ID, "artifact").text, 30)
            ok(f"the {step} step's {name} reads on the page", shown,
               d.find_element(By.ID, "artifact").text + d.find_element(By.ID, "problem").text)
        shot(d, out, "run")

    view(d, "logs")
    Select(d.find_element(By.ID, "log-unit")).select_by_value("vm-a")
    ok("the logs view shows a unit's journal (the admin reads the system journal)",
       until("journal lines", lambda: "hello from vm-a" in d.find_element(By.ID, "log").text, 60),
       d.find_element(By.ID, "log").text + d.find_element(By.ID, "problem").text)
    shot(d, out, "logs")

    # A user outside aither-admin: everything visible, nothing changeable, and agentd refuses
    # a call made anyway.
    ok("a user outside aither-admin logs in", login(d, base, VIEWER))
    ok("and sees the page", open_page(d, base))
    view(d, "units")
    row = until("vm-a in the units", lambda: unit_row(d, "vm-a"))
    buttons = row.find_elements(By.TAG_NAME, "button") if row else []
    ok("the actions are disabled, with the reason", buttons and all(not b.is_enabled() for b in buttons)
       and "aither-admin" in (buttons[0].get_attribute("title") or ""), [b.get_attribute("title") for b in buttons])
    ok("the page says why", "Only root and members of aither-admin" in d.find_element(By.ID, "who").text)
    reply = d.execute_async_script("""
        const done = arguments[arguments.length - 1];
        cockpit.dbus("org.aitheros.Agentd1", { bus: "system" })
            .call("/org/aitheros/Agentd1", "org.aitheros.Agentd1", "Restart", ["vm-a"])
            .then(r => done("allowed: " + r[0]), e => done("refused: " + e.name + ": " + e.message));
    """)
    ok("agentd refuses the viewer's restart with the reason", reply.startswith("refused:") and "aither-admin" in reply, reply)
    view(d, "workflows")
    press("the approved run's Steps", lambda: d.find_element(
        By.XPATH, f'//table[@id="runs"]//tr[starts-with(@data-run, "{approved_run}")]//button[text()="Steps"]'))
    outputs = until("a step's outputs", lambda: d.find_elements(By.CSS_SELECTOR, "#steps button.link"), 30) or []
    ok("the viewer sees a run's outputs listed, not readable, with the reason",
       outputs and all(not b.is_enabled() for b in outputs) and "aither-admin" in (outputs[0].get_attribute("title") or ""),
       d.find_element(By.ID, "run-detail").text)
    shot(d, out, "viewer")


if __name__ == "__main__":
    sys.exit(main())
