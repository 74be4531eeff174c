import './styles.css';
import { loadAppState, loadSettings, openBundleFile, refreshHistory, refreshResources, showError, watchSessions } from './actions';
import { inTauri } from './api';
import { state } from './store';
import { mountHistory } from './ui/history';
import { mountResources } from './ui/resources';
import { mountSessions } from './ui/sessions';
import { mountSettings } from './ui/settings';
import { mountShell } from './ui/shell';
import { mountSupport } from './ui/support';
import { mountTimeline } from './ui/timeline';

async function boot(): Promise<void> {
  // `vite` + /?mock: a fake backend for working on the UI without the Rust side.
  // Dead code in `vite build` (import.meta.env.DEV is false there), so it never ships.
  if (import.meta.env.DEV && new URLSearchParams(location.search).has('mock')) {
    const { installMockBackend } = await import('./dev/mock');
    installMockBackend();
  }
  state.tauri = inTauri();

  const root = document.getElementById('app');
  if (!root) throw new Error('#app is missing from index.html');
  const sections = mountShell(root);
  mountResources(sections.resources);
  mountTimeline(sections.timeline);
  mountSessions(sections.sessions);
  mountHistory(sections.history);
  mountSupport(sections.support);
  mountSettings(sections.settings);

  window.addEventListener('unhandledrejection', (e) => showError(e.reason));
  // A diagnostic bundle dropped anywhere on the window opens on the Timeline.
  const dragging = (on: boolean) => document.body.classList.toggle('dropping', on);
  window.addEventListener('dragover', (e) => {
    if (!e.dataTransfer?.types.includes('Files')) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = 'copy';
    dragging(true);
  });
  window.addEventListener('dragleave', (e) => {
    if (e.relatedTarget === null) dragging(false);
  });
  window.addEventListener('drop', (e) => {
    e.preventDefault();
    dragging(false);
    const file = e.dataTransfer?.files[0];
    if (file) void openBundleFile(file);
  });
  if (!state.tauri) return;

  await Promise.all([loadAppState(), refreshResources(), refreshHistory(), loadSettings(), watchSessions()]);
  // Gateways come and go: keep the online dots fresh while the list is on screen.
  setInterval(() => {
    if (state.panel === 'resources' && !document.hidden) void refreshResources(true);
  }, 15_000);
}

boot().catch((e) => {
  console.error(e);
  showError(e);
});
