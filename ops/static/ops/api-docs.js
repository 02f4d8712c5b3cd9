// Swagger UI over the service's own OpenAPI document. "Authorize" takes a token as
// `Token <key>` (the document's tokenAuth scheme); "Try it out" sends requests to this service.
(function () {
  "use strict";
  var root = document.getElementById("api-docs");
  window.ui = SwaggerUIBundle({
    url: root.dataset.schemaUrl,
    domNode: root,
    deepLinking: true,
    persistAuthorization: true,
    displayOperationId: true,
    tryItOutEnabled: false,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
})();
