// The Tags tab: create, rename and delete worker tags, and choose which workers carry a tag.

import { api } from "./api.js";
import { fill, h } from "./dom.js";
import { confirmDialog, notify } from "./notify.js";
import { changes, state } from "./state.js";
import { statusBadge } from "./statuses.js";

// Worker details fetched at once when listing who carries a tag.
const FETCH_CONCURRENCY = 8;

export class TagsView {
  constructor() {
    this.visible = false;
    this.selected = null;
    this.list = h("div", { class: "tag-list" });
    this.assign = h("div", { class: "details" });
    const name = h("input", { id: "new-tag-name", required: true, autocomplete: "off", placeholder: "e.g. gpu" });
    const description = h("input", { id: "new-tag-description", autocomplete: "off", placeholder: "optional" });
    const create = h(
      "form",
      { class: "create-tag", "aria-label": "Create a tag" },
      h("div", { class: "field" }, h("label", { for: "new-tag-name" }, "New tag"), name),
      h("div", { class: "field grow" }, h("label", { for: "new-tag-description" }, "Description"), description),
      h("button", { type: "submit", class: "btn primary" }, "Create tag"),
    );
    create.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const tag = await api.createTag(name.value.trim(), description.value.trim());
        state.tags.set(tag.id, tag);
        notify(`Tag ${tag.name} created.`, "success");
        name.value = "";
        description.value = "";
        this.render();
      } catch (err) {
        notify(`Tag not created: ${err.message}.`, "error");
      }
    });
    this.element = h(
      "section",
      { class: "view two-pane", "aria-label": "Tags" },
      h(
        "div",
        { class: "pane list-pane" },
        h("div", { class: "toolbar" }, create),
        h(
          "p",
          { class: "hint pad" },
          "A worker with tags only runs jobs that carry one of its tags, and jobs without a tag. A worker without tags only runs jobs without a tag.",
        ),
        this.list,
      ),
      h("aside", { class: "pane details-pane", "aria-label": "Workers with the tag" }, this.assign),
    );
    changes.addEventListener("tags", () => this.visible && this.render());
    changes.addEventListener("reset", () => this.visible && this.render());
  }

  show(params) {
    this.visible = true;
    if (params[0]) this.selected = params[0];
    this.render();
  }

  hide() {
    this.visible = false;
  }

  render() {
    const tags = [...state.tags.values()].sort((a, b) => a.name.localeCompare(b.name));
    if (this.selected && !state.tags.has(this.selected)) this.selected = null;
    if (!tags.length) {
      fill(this.list, h("p", { class: "placeholder" }, "No tags yet. Create one above."));
    } else {
      fill(
        this.list,
        h(
          "table",
          { class: "simple-table", "aria-label": "Tags" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              h("th", { scope: "col" }, "Name"),
              h("th", { scope: "col" }, "Description"),
              h("th", { scope: "col", class: "col-actions" }, "Actions"),
            ),
          ),
          h(
            "tbody",
            {},
            tags.map((tag) => this.row(tag)),
          ),
        ),
      );
    }
    this.renderAssign();
  }

  row(tag) {
    const row = h("tr", { "data-id": tag.id, "aria-selected": tag.id === this.selected ? "true" : "false" });
    const choose = h(
      "a",
      { href: `#/tags/${encodeURIComponent(tag.id)}`, title: "Choose the workers with this tag" },
      tag.name,
    );
    const rename = h(
      "button",
      { type: "button", class: "btn small", "aria-label": `Rename tag ${tag.name}` },
      "Rename",
    );
    const remove = h(
      "button",
      { type: "button", class: "btn small danger", "aria-label": `Delete tag ${tag.name}` },
      "Delete…",
    );
    rename.addEventListener("click", () => this.editRow(row, tag));
    remove.addEventListener("click", async () => {
      const ok = await confirmDialog(
        `Delete tag ${tag.name}?`,
        "Workers lose this tag, and jobs that carried it can run on any worker.",
        "Delete tag",
      );
      if (!ok) return;
      try {
        await api.deleteTag(tag.id);
        state.tags.delete(tag.id);
        notify(`Tag ${tag.name} deleted.`, "success");
        this.render();
      } catch (err) {
        notify(`Tag ${tag.name} not deleted: ${err.message}.`, "error");
      }
    });
    row.append(
      h("td", { class: "col-name" }, choose),
      h("td", {}, tag.description || h("span", { class: "muted" }, "–")),
      h("td", { class: "col-actions" }, rename, remove),
    );
    return row;
  }

  editRow(row, tag) {
    const name = h("input", { value: tag.name, "aria-label": "Tag name", required: true });
    const description = h("input", { value: tag.description || "", "aria-label": "Tag description" });
    const form = h("form", { class: "inline-form", id: `edit-${tag.id}` });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await api.updateTag(tag.id, name.value.trim(), description.value.trim());
        state.tags.set(tag.id, { ...tag, name: name.value.trim(), description: description.value.trim() });
        notify(`Tag renamed to ${name.value.trim()}.`, "success");
        this.render();
      } catch (err) {
        notify(`Tag not renamed: ${err.message}.`, "error");
      }
    });
    const cancel = h("button", { type: "button", class: "btn small", onclick: () => this.render() }, "Cancel");
    fill(
      row,
      h("td", {}, form, name),
      h("td", {}, description),
      h(
        "td",
        { class: "col-actions" },
        h("button", { type: "submit", class: "btn small primary", form: form.id }, "Save"),
        cancel,
      ),
    );
    name.setAttribute("form", form.id);
    description.setAttribute("form", form.id);
    name.focus();
    name.select();
  }

  async renderAssign() {
    const tag = this.selected ? state.tags.get(this.selected) : null;
    if (!tag) {
      fill(
        this.assign,
        h(
          "div",
          { class: "placeholder" },
          h("p", {}, "Choose a tag to pick the workers that carry it."),
          h("p", { class: "muted" }, "Tags can also be switched per worker in the Workers tab."),
        ),
      );
      return;
    }
    fill(
      this.assign,
      h("header", { class: "details-head" }, h("h2", {}, `Workers with tag ${tag.name}`)),
      h("p", { class: "muted pad" }, "Loading…"),
    );
    const workers = [...state.workers.values()].sort((a, b) =>
      a.name.localeCompare(b.name, undefined, { numeric: true }),
    );
    const details = await fetchAllLimited(workers.map((w) => () => api.worker(w.id)));
    if (this.selected !== tag.id) return;
    const list = h(
      "ul",
      { class: "toggles worker-checklist" },
      details.filter(Boolean).map((w) => {
        const has = (w.tags || []).some((t) => t.id === tag.id);
        const input = h("input", { type: "checkbox", id: `assign-${w.id}`, checked: has });
        input.addEventListener("change", async () => {
          const ids = new Set((w.tags || []).map((t) => t.id));
          if (input.checked) ids.add(tag.id);
          else ids.delete(tag.id);
          try {
            await api.setWorkerTags(w.id, [...ids]);
            w.tags = [...ids].map((id) => state.tags.get(id)).filter(Boolean);
            notify(`Worker ${w.name}: tag ${tag.name} ${input.checked ? "added" : "removed"}.`, "success");
          } catch (err) {
            input.checked = !input.checked;
            notify(`Worker ${w.name}: tags not changed: ${err.message}.`, "error");
          }
        });
        return h("li", {}, h("label", { for: `assign-${w.id}` }, input, h("span", {}, w.name)), statusBadge(w.status));
      }),
    );
    fill(
      this.assign,
      h("header", { class: "details-head" }, h("h2", {}, `Workers with tag ${tag.name}`)),
      tag.description ? h("p", { class: "hint pad" }, tag.description) : null,
      workers.length ? list : h("p", { class: "muted" }, "No workers yet."),
    );
  }
}

async function fetchAllLimited(calls) {
  const results = new Array(calls.length);
  let next = 0;
  async function lane() {
    while (next < calls.length) {
      const i = next++;
      results[i] = await calls[i]().catch(() => null);
    }
  }
  await Promise.all(Array.from({ length: Math.min(FETCH_CONCURRENCY, calls.length) }, lane));
  return results;
}
