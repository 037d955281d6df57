import { byId } from '../page/dom.ts';

/**
 * Asks before a destructive action, in the page's one modal `<dialog id="confirm">`: its heading and
 * text say what will happen, and the confirming button is named after the action. Resolves true only
 * for that button; Cancel, Escape and closing otherwise resolve false. Cancel has focus when it opens
 * (a stray Enter does nothing harmful), and focus returns to where it was when it closes.
 */
export function confirmAction(options: { title: string; text: string; action: string }): Promise<boolean> {
  const dialog = byId<HTMLDialogElement>('confirm');
  const title = byId('confirm-title');
  const text = byId('confirm-text');
  const accept = byId<HTMLButtonElement>('confirm-accept');
  const cancel = byId<HTMLButtonElement>('confirm-cancel');
  const previous = document.activeElement instanceof HTMLElement ? document.activeElement : null;

  title.textContent = options.title;
  text.textContent = options.text;
  accept.textContent = options.action;
  dialog.returnValue = '';
  dialog.showModal();
  cancel.focus();

  return new Promise((resolve) => {
    const onAccept = () => dialog.close('accept');
    const onCancel = () => dialog.close('cancel');
    accept.addEventListener('click', onAccept);
    cancel.addEventListener('click', onCancel);
    dialog.addEventListener(
      'close',
      () => {
        accept.removeEventListener('click', onAccept);
        cancel.removeEventListener('click', onCancel);
        if (previous?.isConnected) previous.focus();
        resolve(dialog.returnValue === 'accept');
      },
      { once: true },
    );
  });
}
