// The demo page's DDP client: ddp.js (MIT, mondora) and sockjs-client (MIT) bundled for
// the browser. Rebuild with `npm run build:demo` in tests/js after changing versions.
import DDPModule from "ddp.js";
import SockJS from "sockjs-client";

const DDP = DDPModule.default || DDPModule;
window.LivedataClient = { DDP, SockJS };
