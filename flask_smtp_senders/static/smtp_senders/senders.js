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

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    status.className = "result";
    status.textContent = "Sending…";
    let data;
    let answered = false;  // a test ran (not refused by the rate limit or an error)
    try {
      const response = await fetch(form.action, {
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
    button.disabled = false;
    if (answered) showLatestTest(data.ok);
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
