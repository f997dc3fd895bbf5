// Send Test Email as a modal: without JavaScript the same links and form work as pages.
document.addEventListener("DOMContentLoaded", () => {
  const dialog = document.getElementById("send-test-email");
  if (!dialog) return;
  const form = dialog.querySelector("form.test-email");
  const status = dialog.querySelector(".result");
  const button = form.querySelector("[type=submit]");
  const recipient = form.querySelector("input[name=recipient]");

  const open = () => {
    if (dialog.open) dialog.close();
    dialog.showModal();
    recipient.focus();
  };
  document.querySelectorAll("[data-open-dialog]").forEach((link) => {
    link.addEventListener("click", (event) => { event.preventDefault(); open(); });
  });
  dialog.querySelectorAll("[data-close-dialog]").forEach((link) => {
    link.addEventListener("click", (event) => { event.preventDefault(); dialog.close(); });
  });
  if (dialog.hasAttribute("data-show-modal")) open();

  const report = dialog.querySelector(".diagnosis");

  // The staged report, built from JSON with textContent only (nothing is parsed as HTML);
  // the page without JavaScript renders the same markup (_macros.html diagnosis_report).
  const element = (tag, className, text) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const showReport = (diagnosis, domainAdvice) => {
    if (!diagnosis) { report.replaceChildren(); return; }
    const box = element("div", "smtp-senders-diagnosis");
    const stages = element("ol", "stages");
    for (const stage of diagnosis.stages) {
      const item = element("li", `stage ${stage.ok ? "ok" : "fail"}`);
      const mark = element("span", "mark", stage.ok ? "✓" : "✗");
      mark.setAttribute("aria-hidden", "true");
      item.append(mark, element("span", "label", stage.label),
        element("span", "outcome", stage.ok ? "passed" : "failed"),
        element("span", "ms", `${Math.round(stage.ms)} ms`));
      if (stage.facts.length) {
        const facts = element("dl", "facts");
        for (const fact of stage.facts) {
          const pair = element("div");
          pair.append(element("dt", "", fact.label), element("dd", "", fact.value));
          facts.append(pair);
        }
        item.append(facts);
      }
      stages.append(item);
    }
    box.append(stages);
    if (diagnosis.advice) {
      const advice = element("p", "advice");
      advice.append(element("strong", "", "Suggested fix:"), ` ${diagnosis.advice}`);
      box.append(advice);
    }
    for (const line of domainAdvice || []) box.append(element("p", "domain-advice", line));
    report.replaceChildren(box);
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const submitter = event.submitter || button;
    const checking = submitter !== button;  // "Check connection" posts to its formaction
    form.querySelectorAll("[type=submit]").forEach((b) => { b.disabled = true; });
    status.className = "result";
    status.textContent = checking ? "Checking…" : "Sending…";
    showReport(null);
    let data;
    let answered = false;  // a test ran (not refused by the rate limit or an error)
    try {
      // formAction falls back to the page's URL, not the form's action, when unset
      const url = submitter.hasAttribute("formaction") ? submitter.formAction : form.action;
      const response = await fetch(url, {
        method: "POST",
        body: new FormData(form),
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      answered = response.status === 200;
      data = await response.json().catch(() => ({
        ok: false, message: `The test could not be sent (HTTP ${response.status}).`,
      }));
    } catch (error) {
      data = { ok: false, message: "The test could not be sent: the portal did not answer." };
    }
    status.textContent = data.message;
    status.className = data.ok ? "result ok" : "result fail";
    showReport(data.diagnosis, data.domain_advice);
    form.querySelectorAll("[type=submit]").forEach((b) => { b.disabled = false; });
    if (answered && !checking) showLatestTest(data.ok);
  });

  // The page behind the modal shows the new test status without a reload.
  const showLatestTest = (ok) => {
    const summary = document.querySelector(".smtp-senders-status");
    if (summary) {
      summary.replaceChildren(Object.assign(document.createElement("span"), {
        className: ok ? "status passed" : "status failed",
        textContent: ok ? "Last test passed just now" : "Last test failed just now",
      }));
    }
    document.querySelectorAll(".smtp-senders-warning").forEach((warning) => {
      warning.hidden = ok;
    });
  };
});
