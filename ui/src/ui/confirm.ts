// A question in the page itself (a modal <dialog>), rather than window.confirm, which a
// webview may not show.
import { h } from './dom';

/** Asks `question`; resolves true on `yes`, false on `no`, Escape or closing. */
export function ask(title: string, question: string, yes: string, no: string): Promise<boolean> {
  return new Promise((resolve) => {
    const accept = h('button', { class: 'btn btn-primary', type: 'button', 'data-testid': 'confirm-yes' }, yes);
    const refuse = h('button', { class: 'btn', type: 'button', 'data-testid': 'confirm-no' }, no);
    const dialog = h(
      'dialog',
      { class: 'card confirm', 'data-testid': 'confirm' },
      h('h2', null, title),
      ...question.split('\n\n').map((p) => h('p', { class: 'mono-wrap' }, p)),
      h('div', { class: 'form-actions' }, accept, refuse),
    );
    let answered = false;
    const finish = (answer: boolean) => {
      if (answered) return;
      answered = true;
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    accept.addEventListener('click', () => finish(true));
    refuse.addEventListener('click', () => finish(false));
    dialog.addEventListener('close', () => finish(false));
    document.body.append(dialog);
    dialog.showModal();
    refuse.focus();
  });
}
