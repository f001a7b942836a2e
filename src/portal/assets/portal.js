// The webhooks page works without this script (plain forms and links); this adds the Add
// Webhook dialog, the copy button, closing menus, and live updates of pending deliveries.
'use strict';

(function () {
  let opener = null;

  function firstField(dialog) {
    return dialog.querySelector('[aria-invalid="true"]') ||
      dialog.querySelector('input:not([type="hidden"]), textarea, select, button');
  }

  function openDialog(dialog) {
    if (typeof dialog.showModal !== 'function') return false;
    if (dialog.open) dialog.close();
    // A modal dialog makes the rest of the page inert, so focus stays inside it.
    dialog.showModal();
    const field = firstField(dialog);
    if (field) field.focus();
    return true;
  }

  async function copy(button) {
    const input = document.getElementById(button.dataset.copy);
    if (!input) return;
    const status = button.closest('section')?.querySelector('.copy-status');
    try {
      await navigator.clipboard.writeText(input.value);
    } catch (_) {
      input.select();
      document.execCommand('copy');
    }
    button.textContent = 'Copied';
    if (status) status.textContent = 'Secret copied to the clipboard.';
  }

  document.addEventListener('click', (event) => {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    const trigger = target.closest('[data-dialog]');
    if (trigger) {
      const dialog = document.getElementById(trigger.dataset.dialog);
      if (dialog && openDialog(dialog)) {
        event.preventDefault();
        opener = trigger;
      }
      return;
    }
    const closer = target.closest('[data-close]');
    if (closer && closer.closest('dialog')) {
      event.preventDefault();
      closer.closest('dialog').close();
      return;
    }
    const copier = target.closest('[data-copy]');
    if (copier) {
      copy(copier);
      return;
    }
    // A click outside an open menu closes it.
    for (const menu of document.querySelectorAll('details.menu[open]')) {
      if (!menu.contains(target)) menu.open = false;
    }
  });

  document.addEventListener('keydown', (event) => {
    if (event.key !== 'Escape') return;
    for (const menu of document.querySelectorAll('details.menu[open]')) {
      menu.open = false;
      menu.querySelector('summary')?.focus();
    }
  });

  // Only one menu open at a time.
  document.addEventListener('toggle', (event) => {
    const menu = event.target;
    if (!(menu instanceof HTMLDetailsElement) || !menu.open) return;
    for (const other of document.querySelectorAll('details.menu[open]')) {
      if (other !== menu) other.open = false;
    }
  }, true);

  function poll() {
    const live = document.querySelector('[data-poll]');
    if (!live) return;
    const every = Math.max(500, Number(live.dataset.poll) || 1000);
    setTimeout(async () => {
      try {
        const resp = await fetch(window.location.href, { credentials: 'same-origin' });
        if (!resp.ok) return;
        const next = new DOMParser().parseFromString(await resp.text(), 'text/html').querySelector('main');
        const main = document.querySelector('main');
        if (next && main) main.replaceWith(next);
      } catch (_) {
        // The next page load will show the state; polling stops on a network error.
        return;
      }
      poll();
    }, every);
  }

  function start() {
    for (const dialog of document.querySelectorAll('dialog')) {
      dialog.addEventListener('close', () => {
        if (opener) opener.focus();
      });
    }
    for (const dialog of document.querySelectorAll('dialog[data-open]')) openDialog(dialog);
    poll();
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
