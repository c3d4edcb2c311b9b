// Refreshes the page's data by itself: polls the page's JSON twin (body[data-api]) and puts the
// new values into the page with textContent and DOM nodes, never as markup (an event's data is
// user input). Draws the statechart with the vendored Mermaid, again when the active states move.
(function () {
  "use strict";

  var body = document.body;
  var api = body.getAttribute("data-api");
  var period = parseInt(body.getAttribute("data-refresh-ms"), 10) || 3000;
  var xsrfInput = document.getElementById("xsrf");
  var xsrf = xsrfInput ? xsrfInput.value : "";
  var diagramNode = document.getElementById("diagram");
  var diagramSource = diagramNode ? diagramNode.textContent : null;

  function drawDiagram() {
    if (!diagramNode || !window.mermaid) {
      return;
    }
    diagramNode.removeAttribute("data-processed");
    diagramNode.textContent = diagramSource;
    window.mermaid.run({ nodes: [diagramNode] }).catch(function (error) {
      diagramNode.textContent = "The statechart could not be drawn: " + error;
    });
  }

  function cellNode(cell) {
    var td = document.createElement("td");
    if (cell.cls) {
      td.className = cell.cls;
    }
    if (cell.post) {
      var form = document.createElement("form");
      form.method = "post";
      form.action = cell.post;
      var token = document.createElement("input");
      token.type = "hidden";
      token.name = "_xsrf";
      token.value = xsrf;
      form.appendChild(token);
      if (cell.field) {
        var field = document.createElement("input");
        field.type = "hidden";
        field.name = cell.field;
        field.value = cell.value || "";
        form.appendChild(field);
      }
      var button = document.createElement("button");
      button.type = "submit";
      button.textContent = cell.label || "";
      form.appendChild(button);
      td.appendChild(form);
    } else if (cell.href) {
      var link = document.createElement("a");
      link.href = cell.href;
      link.textContent = cell.text || "";
      td.appendChild(link);
    } else if (cell.pre) {
      var pre = document.createElement("pre");
      pre.textContent = cell.text || "";
      td.appendChild(pre);
    } else {
      td.textContent = cell.text || "";
    }
    return td;
  }

  function fillTable(name, rows) {
    var table = document.querySelector('table[data-table="' + name + '"]');
    if (!table) {
      return;
    }
    var tbody = table.tBodies[0];
    var fresh = document.createElement("tbody");
    rows.forEach(function (row) {
      var tr = document.createElement("tr");
      row.forEach(function (cell) {
        tr.appendChild(cellNode(cell));
      });
      fresh.appendChild(tr);
    });
    table.replaceChild(fresh, tbody);
    var empty = document.querySelector('[data-empty="' + name + '"]');
    if (empty) {
      empty.hidden = rows.length > 0;
    }
  }

  function apply(model) {
    var texts = model.texts || {};
    document.querySelectorAll("[data-text]").forEach(function (node) {
      var key = node.getAttribute("data-text");
      if (Object.prototype.hasOwnProperty.call(texts, key) && node.textContent !== texts[key]) {
        node.textContent = texts[key];
      }
      if (node.hasAttribute("data-status") && texts[key] !== undefined) {
        node.setAttribute("data-status", texts[key]);
      }
    });
    document.querySelectorAll("[data-show]").forEach(function (node) {
      node.hidden = !texts[node.getAttribute("data-show")];
    });
    var can = model.can || {};
    document.querySelectorAll("[data-when]").forEach(function (node) {
      node.hidden = !can[node.getAttribute("data-when")];
    });
    var links = model.links || {};
    document.querySelectorAll("[data-link]").forEach(function (node) {
      var href = links[node.getAttribute("data-link")];
      node.hidden = !href;
      if (href) {
        node.href = href;
      }
    });
    Object.keys(model.tables || {}).forEach(function (name) {
      fillTable(name, model.tables[name]);
    });
    var next = document.getElementById("next");
    if (next && model.next !== undefined) {
      next.hidden = !model.next;
      if (model.next) {
        next.href = model.next;
      }
    }
    if (diagramNode && typeof model.diagram === "string" && model.diagram !== diagramSource) {
      diagramSource = model.diagram;
      drawDiagram();
    }
  }

  function stamp(text) {
    var node = document.querySelector('[data-text="refreshed"]');
    if (node) {
      node.textContent = text;
    }
  }

  function poll() {
    fetch(api, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json().then(function (data) {
          if (!response.ok) {
            throw new Error(data.error || response.status);
          }
          return data;
        });
      })
      .then(function (model) {
        apply(model);
        stamp("refreshed " + new Date().toLocaleTimeString());
      })
      .catch(function (error) {
        stamp("refresh failed: " + error.message);
      })
      .then(function () {
        window.setTimeout(poll, period);
      });
  }

  if (window.mermaid) {
    window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "default" });
    drawDiagram();
  }
  if (api) {
    window.setTimeout(poll, period);
  }
})();
