// Search snippets from the article only: Sphinx takes them from the whole `[role=main]`, which in the book theme also
// holds the print-only table of contents, the article's header buttons and the page's "Contents" sidebar.
(() => {
  const SKIP = '#jb-print-docs-body, .bd-header-article, .bd-sidebar-secondary, .prev-next-area, .bd-footer-article';
  const patch = () => {
    if (typeof Search === 'undefined' || Search._articleOnly) return;  // a global `const`, not a window property
    const orig = Search.htmlToText;
    Search.htmlToText = (html, anchor) => {
      const doc = new DOMParser().parseFromString(html, 'text/html');
      doc.querySelectorAll(SKIP).forEach(el => el.remove());
      return orig(doc.documentElement.outerHTML, anchor);
    };
    Search._articleOnly = true;
  };
  patch();
  document.addEventListener('DOMContentLoaded', patch);
})();
