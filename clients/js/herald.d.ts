export declare function subscribe(): void;
